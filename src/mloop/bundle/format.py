"""The bundle files inside a registered MLflow model, and reading them back.

Layout of a registered model's artifacts::

    MLmodel, model.*, ...        the MLflow sklearn/pyfunc model with signature and input example
    mloop/bundle.json            target, features, classes, class counts, metrics, lineage
    mloop/profile.json           the training data's ReferenceProfile
    mloop/outlier_detector.pkl   the fitted outlier detector (optional)
    mloop/train_rows.npy         fingerprints of the training rows (``bundle.rows``; not in older bundles)
    mloop/served.json            name and version, when the folder was exported to serve on its own
"""

from __future__ import annotations

import json
import pickle
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mloop._fs import atomic_write_bytes, atomic_write_text
from mloop.bundle.profile import ReferenceProfile
from mloop.bundle.schema import FeatureSchema
from mloop.errors import ModelSerializationError

if TYPE_CHECKING:
    from mloop.bundle.rows import TrainingRows

BUNDLE_DIR = "mloop"
BUNDLE_FORMAT = 1


@dataclass
class Lineage:
    """Where a registered model came from."""

    run_id: str = ""  # the tracked pipeline run (MLflow's id)
    pipeline: str = ""
    data_sha256: list[str] = field(default_factory=list)  # the run's input files
    git_commit: str = ""
    git_dirty: bool | None = None
    model_digest: str = ""  # the model's digest in the artifact store
    packages: dict[str, str] = field(default_factory=dict)
    # the DVC version of each input file (path, md5, tracked_by, version, commit, state, remote, object_url)
    data_versions: list[dict[str, str]] = field(default_factory=list)


@dataclass
class BundleInfo:
    """``bundle.json``: what the model predicts from what, and where it came from."""

    target: str
    features: list[str]
    task: str = ""  # binary, multiclass or regression ("" in bundles written before it was recorded)
    classes: list[Any] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    test_scores: dict[str, float] = field(default_factory=dict)  # live scores on the test set (alert thresholds)
    lineage: Lineage = field(default_factory=Lineage)
    has_outlier_detector: bool = False
    class_counts: dict[str, int] = field(default_factory=dict)  # training labels per class (prediction drift)
    schema: list[FeatureSchema] = field(default_factory=list)  # per feature ("" in bundles written before it)

    @property
    def regression(self) -> bool:
        """Whether the model is a regressor (bundles written before the task was recorded: it has no classes)."""
        return self.task == "regression" if self.task else not self.classes


@dataclass
class Bundle:
    """A bundle read back from a model folder."""

    info: BundleInfo
    profile: ReferenceProfile
    outlier_detector: Any = None


@dataclass
class ServedAs:
    """``served.json``: the registry name and version of a model folder exported to be served on its own."""

    name: str
    version: str


def write_bundle(model_dir: Path, info: BundleInfo, profile: ReferenceProfile, outlier_detector: Any = None,
                 train_rows: TrainingRows | None = None) -> None:
    """Add the mloop files to a saved MLflow model directory (``train_rows``: the rows it trained on).

    Raises ModelSerializationError if the outlier detector cannot be pickled.
    """
    folder = model_dir / BUNDLE_DIR
    info.has_outlier_detector = outlier_detector is not None
    if outlier_detector is not None:
        import cloudpickle

        try:  # cloudpickle: a detector class defined in the project's pipeline file travels by value
            blob = cloudpickle.dumps(outlier_detector, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as err:  # pickling raises many types (PicklingError, TypeError, AttributeError)
            raise ModelSerializationError(
                f"the outlier detector ({type(outlier_detector).__name__}) cannot be pickled: {err}",
                hint="return a fitted scikit-learn detector (e.g. IsolationForest) as ModelCandidate.outlier_detector",
            ) from err
        atomic_write_bytes(folder / "outlier_detector.pkl", blob)
    payload = {"format": BUNDLE_FORMAT, **asdict(info)}
    atomic_write_text(folder / "bundle.json", json.dumps(payload, indent=1, default=str))
    profile.save(folder / "profile.json")
    if train_rows is not None:
        train_rows.save(folder)


def read_bundle(model_dir: Path) -> Bundle:
    """The bundle of a downloaded model directory; FileNotFoundError names a missing file."""
    folder = model_dir / BUNDLE_DIR
    info = read_info(folder / "bundle.json")
    profile = ReferenceProfile.load(folder / "profile.json")
    detector = None
    if info.has_outlier_detector:
        with (folder / "outlier_detector.pkl").open("rb") as fh:
            detector = pickle.load(fh)  # noqa: S301 - written by this project's own registry
    return Bundle(info, profile, detector)


def read_info(path: Path) -> BundleInfo:
    """``bundle.json`` alone (at ``path``): what a version takes, how it scored, where it came from."""
    data = json.loads(path.read_text(encoding="utf-8"))
    data.pop("format", None)
    lineage = data.pop("lineage", {}) or {}
    if isinstance(lineage.get("git_dirty"), str):  # bundles written before it was a boolean
        lineage["git_dirty"] = {"true": True, "false": False}.get(lineage["git_dirty"])
    known = {f.name for f in fields(Lineage)}
    schema = [FeatureSchema(**spec) for spec in data.pop("schema", None) or []]
    return BundleInfo(**data, lineage=Lineage(**{k: v for k, v in lineage.items() if k in known}), schema=schema)


def write_served_as(model_dir: Path, served: ServedAs) -> None:
    atomic_write_text(model_dir / BUNDLE_DIR / "served.json", json.dumps(asdict(served)))


def read_served_as(model_dir: Path) -> ServedAs | None:
    path = model_dir / BUNDLE_DIR / "served.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return ServedAs(str(data["name"]), str(data["version"]))
