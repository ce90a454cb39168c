"""The model bundle: everything serving and monitoring need, inside the registered MLflow model.

Layout of a registered model's artifacts::

    MLmodel, model.pkl, ...      the MLflow sklearn/pyfunc model with signature and input example
    mloop/bundle.json            target, features, classes, metrics, lineage
    mloop/profile.json           the training data's ReferenceProfile
    mloop/outlier_detector.pkl   the fitted outlier detector (optional)
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BUNDLE_DIR = "mloop"
BUNDLE_FORMAT = 1


@dataclass
class BundleInfo:
    target: str
    features: list[str]
    classes: list[Any] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)
    has_outlier_detector: bool = False
    class_counts: dict[str, int] = field(default_factory=dict)  # training labels per class (prediction drift)


def write_bundle(model_dir: Path, info: BundleInfo, profile: Any, outlier_detector: Any = None) -> None:
    """Add the mloop files to a saved MLflow model directory."""
    folder = model_dir / BUNDLE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    info.has_outlier_detector = outlier_detector is not None
    payload = {"format": BUNDLE_FORMAT, **info.__dict__}
    (folder / "bundle.json").write_text(json.dumps(payload, indent=1, default=str), encoding="utf-8")
    profile.save(folder / "profile.json")
    if outlier_detector is not None:
        with (folder / "outlier_detector.pkl").open("wb") as fh:
            pickle.dump(outlier_detector, fh, protocol=pickle.HIGHEST_PROTOCOL)


def read_bundle(model_dir: Path) -> tuple[BundleInfo, Any, Any]:
    """``(info, profile, outlier_detector or None)`` from a downloaded model directory."""
    from mloop.monitor.profile import ReferenceProfile

    folder = model_dir / BUNDLE_DIR
    data = json.loads((folder / "bundle.json").read_text(encoding="utf-8"))
    data.pop("format", None)
    info = BundleInfo(**data)
    profile = ReferenceProfile.load(folder / "profile.json")
    detector = None
    if info.has_outlier_detector:
        with (folder / "outlier_detector.pkl").open("rb") as fh:
            detector = pickle.load(fh)  # noqa: S301 - written by this project's own registry
    return info, profile, detector
