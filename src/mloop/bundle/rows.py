"""Which rows a model trained on, kept in its bundle, so that a comparison of two models can leave out the
rows one of them trained on and the other did not (a model scored on rows it learned looks better than it is).

A row's fingerprint is a 64-bit hash of its values in the bundle's feature columns and target, in that
order (pandas' ``hash_pandas_object``). Each column is normalised first, so that the same values hash the
same whatever dtype a later frame gives them: numbers and booleans as float64 (an int column read back as
float, a bool as 0/1, -0.0 as 0.0), anything else as text; a missing value hashes as missing. Two different
rows share a fingerprint with a probability of about n² / 2⁶⁵ (a million rows: 3e-8).

``mloop/train_rows.npy`` holds the sorted distinct fingerprints of the training frame: 8 bytes a row.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mloop._fs import atomic_write_bytes

if TYPE_CHECKING:
    from pandas import DataFrame, Series

TRAIN_ROWS = "train_rows.npy"


def fingerprints(frame: DataFrame, columns: list[str]) -> np.ndarray:
    """One uint64 per row of ``frame`` over ``columns`` (KeyError: a column it lacks)."""
    import pandas as pd

    normalised = pd.DataFrame({str(n): _normalised(frame[name]) for n, name in enumerate(columns)})
    hashes: np.ndarray = pd.util.hash_pandas_object(normalised, index=False).to_numpy(dtype=np.uint64)
    return hashes


def _normalised(column: Series) -> Series:
    import pandas as pd

    kind = column.dtype
    if pd.api.types.is_bool_dtype(kind) or (pd.api.types.is_numeric_dtype(kind) and not pd.api.types.is_complex_dtype(kind)
                                           and not isinstance(kind, pd.CategoricalDtype)):
        return column.astype("float64") + 0.0  # + 0.0: -0.0 becomes 0.0
    return column.astype(object).where(column.notna(), None).map(lambda v: v if v is None else str(v))


@dataclass
class TrainingRows:
    """The rows one model trained on: its bundle's columns (features, then target) and their fingerprints."""

    columns: list[str]
    fingerprints: np.ndarray

    @classmethod
    def of_frame(cls, frame: DataFrame, columns: list[str]) -> TrainingRows:
        return cls(columns, np.unique(fingerprints(frame, columns)))

    def seen(self, frame: DataFrame) -> np.ndarray | None:
        """Per row of ``frame``: whether the model trained on it (None: ``frame`` lacks one of the columns)."""
        if any(c not in frame.columns for c in self.columns):
            return None
        return np.isin(fingerprints(frame, self.columns), self.fingerprints)

    def save(self, folder: Path) -> None:
        """``folder/train_rows.npy`` (the columns are the bundle's own)."""
        buffer = io.BytesIO()
        np.save(buffer, self.fingerprints, allow_pickle=False)
        atomic_write_bytes(folder / TRAIN_ROWS, buffer.getvalue())


def read_training_rows(model_dir: Path) -> TrainingRows | None:
    """The training rows saved in a model directory's bundle; None when it has none (a bundle written before
    they were kept) or they cannot be read."""
    from mloop.bundle.format import BUNDLE_DIR, read_info

    folder = model_dir / BUNDLE_DIR
    try:
        info = read_info(folder / "bundle.json")
        rows = np.load(folder / TRAIN_ROWS, allow_pickle=False)
    except (OSError, ValueError, TypeError):
        return None
    if rows.dtype != np.uint64 or rows.ndim != 1:
        return None
    return TrainingRows([*info.features, info.target], rows)


def trained_by_one(frame: DataFrame, first: TrainingRows | None, second: TrainingRows | None) -> np.ndarray | None:
    """Per row of ``frame`` (features and target): whether exactly one of two models trained on it, the rows
    a fair comparison leaves out (a row both trained on favours neither). None when either model's rows
    are not known or ``frame`` lacks one of its columns."""
    if first is None or second is None:
        return None
    mine, theirs = first.seen(frame), second.seen(frame)
    if mine is None or theirs is None:
        return None
    return mine ^ theirs  # type: ignore[no-any-return]
