"""Which rows a model trained on, kept in its bundle, so that a comparison of two models can leave out the
rows one of them trained on and the other did not (a model scored on rows it learned looks better than it is).

A row's fingerprint is a 64-bit hash of its values in the bundle's feature columns and target, in that
order (pandas' ``hash_array`` per column, mixed into the row's as FNV-1a mixes bytes). Each value is
normalised first, so that the same values hash the same whatever dtype a later frame gives them: numbers
and booleans as float64 (an int column read back as float; a bool as 0/1, also in a column of objects that
a missing value made of it; -0.0 as 0.0), dates and times as nanoseconds (UTC), anything else as text; a
missing value hashes as missing. A column that held dates in training and holds text in a later frame (a
CSV file) is parsed as dates. Two different rows share a fingerprint with a probability of about n² / 2⁶⁵
(a million rows: 3e-8).

``mloop/train_rows.npy`` holds the sorted distinct fingerprints of the training frame: 8 bytes a row.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mloop._fs import atomic_write_bytes

if TYPE_CHECKING:
    from pandas import DataFrame, Series

TRAIN_ROWS = "train_rows.npy"


def fingerprints(frame: DataFrame, columns: list[Any], *, coerce: dict[str, str] | None = None) -> np.ndarray:
    """One uint64 per row of ``frame`` over its columns ``columns`` (its own labels; KeyError: one it lacks).
    ``coerce``, by column name: "datetime" parses a column that holds text (a date read back from CSV) as
    dates first, "float32" rounds a column to the float32 values training had."""
    from pandas.util import hash_array

    no_text = hash_array(np.array([None], dtype=object))[0]  # what a missing text hashes to
    hashes = np.full(len(frame), 0x9E3779B97F4A7C15, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for label in columns:
            column = _coerced(frame[label], (coerce or {}).get(str(label), ""))
            numbers, text = _normalised(column)
            mixed = hash_array(numbers) * _MULTIPLIER ^ (no_text if text is None else hash_array(text))
            hashes = hashes * _MULTIPLIER ^ mixed
    return hashes


def column_labels(frame: DataFrame, names: list[str]) -> tuple[list[Any], list[str]]:
    """``frame``'s own labels of the columns ``names`` (a bundle keeps names as text; a frame may label its
    columns 0, 1, 2), and the names it lacks."""
    by_name = {str(c): c for c in frame.columns}
    return [by_name[n] for n in names if n in by_name], [n for n in names if n not in by_name]


def own_columns(frame: DataFrame, features: list[str]) -> tuple[DataFrame, list[str]]:
    """``frame``'s columns a model takes (``features``, its bundle's, in its order; empty: not known, it takes
    ``frame`` as it is), and the names of those ``frame`` lacks (then ``frame`` itself is returned)."""
    if not features:
        return frame, []
    labels, missing = column_labels(frame, features)
    if missing:
        return frame, missing
    return (frame if list(frame.columns) == labels else frame[labels]), []


def read_bundle_columns(model_dir: Path) -> tuple[list[str], TrainingRows | None]:
    """What a comparison of a registered model needs beside its estimator: the columns it takes (empty: a model
    registered outside mloop, with no bundle) and the rows it trained on (None: not known)."""
    from mloop.bundle.format import BUNDLE_DIR, read_info

    try:
        features = read_info(model_dir / BUNDLE_DIR / "bundle.json").features
    except (OSError, ValueError, TypeError):
        features = []
    return features, read_training_rows(model_dir)


def _coerced(column: Series, kind: str) -> Series:
    import pandas as pd

    if kind == "datetime" and not _is_datetime(column.dtype):
        return _as_dates(column)
    if kind == "float32" and column.dtype != np.float32 and pd.api.types.is_numeric_dtype(column.dtype) \
            and not pd.api.types.is_bool_dtype(column.dtype):
        return column.astype(np.float32)
    return column


_MULTIPLIER = np.uint64(0x100000001B3)  # FNV-1a's 64-bit prime: mixes each column's hash into the row's


def _is_datetime(kind: Any) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_datetime64_any_dtype(kind))


def _as_dates(column: Series) -> Series:
    import pandas as pd

    try:
        return pd.to_datetime(column, errors="coerce", format="mixed")  # each value parsed on its own
    except (TypeError, ValueError):  # offsets that differ from row to row
        return pd.to_datetime(column, errors="coerce", format="mixed", utc=True)


def _normalised(column: Series) -> tuple[np.ndarray, np.ndarray | None]:
    """A column as a number part (float64; NaN: missing, or not a number) and a text part (None in a row:
    missing, or a number; None for the whole column: no text in it), the same for the same values whatever
    the column's dtype."""
    import pandas as pd

    kind = column.dtype
    if _is_datetime(kind) or pd.api.types.is_timedelta64_dtype(kind):
        if getattr(kind, "tz", None) is not None:
            column = column.dt.tz_convert("UTC").dt.tz_localize(None)
        values = column.to_numpy(dtype="datetime64[ns]" if _is_datetime(kind) else "timedelta64[ns]")
        numbers = values.astype(np.int64).astype(np.float64)
        numbers[np.isnat(values)] = np.nan
        return numbers, None
    if pd.api.types.is_bool_dtype(kind) or (pd.api.types.is_numeric_dtype(kind)
                                           and not pd.api.types.is_complex_dtype(kind)
                                           and not isinstance(kind, pd.CategoricalDtype)):
        return column.to_numpy(dtype=np.float64, na_value=np.nan) + 0.0, None  # + 0.0: -0.0 is 0.0
    values = column.astype(object)
    inferred = pd.api.types.infer_dtype(values, skipna=True)
    if inferred in ("string", "empty"):
        return np.full(len(values), np.nan), values.where(values.notna(), None).to_numpy(dtype=object)
    if inferred in ("boolean", "integer", "floating", "mixed-integer-float", "decimal"):
        return pd.to_numeric(values.where(values.notna(), np.nan)).to_numpy(dtype=np.float64) + 0.0, None
    numbers, text = np.full(len(values), np.nan), np.full(len(values), None, dtype=object)
    for i, value in enumerate(values.tolist()):  # a mix of kinds: value by value
        if value is None or value is pd.NaT or value is pd.NA or (isinstance(value, float) and value != value):
            continue
        if isinstance(value, (bool, int, float, np.bool_, np.integer, np.floating)):
            numbers[i] = float(value) + 0.0
        elif isinstance(value, (pd.Timestamp, date, np.datetime64)):  # a date, or a datetime (a date too)
            stamp = pd.Timestamp(value)
            numbers[i] = float((stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo else stamp).value)
        else:
            text[i] = str(value)
    return numbers, text


@dataclass
class TrainingRows:
    """The rows one model trained on: its bundle's columns (features, then target) and their fingerprints."""

    columns: list[str]
    fingerprints: np.ndarray
    coerce: dict[str, str] = field(default_factory=dict)  # a column's training dtype a later frame is cast to

    @classmethod
    def of_frame(cls, frame: DataFrame, columns: list[str]) -> TrainingRows:
        labels, _ = column_labels(frame, columns)
        return cls(columns, np.unique(fingerprints(frame, labels)),
                   {str(c): kind for c in labels if (kind := _coercion(str(frame[c].dtype)))})

    def seen(self, frame: DataFrame) -> np.ndarray | None:
        """Per row of ``frame``: whether the model trained on it (None: ``frame`` lacks one of the columns)."""
        hashes = self.hashes(frame)
        return None if hashes is None else np.isin(hashes, self.fingerprints)

    def hashes(self, frame: DataFrame) -> np.ndarray | None:
        """``frame``'s fingerprints over these columns, cast as training had them (None: it lacks one)."""
        labels, missing = column_labels(frame, self.columns)
        return None if missing else fingerprints(frame, labels, coerce=self.coerce)

    def save(self, folder: Path) -> None:
        """``folder/train_rows.npy`` (the columns and their dtypes are the bundle's own)."""
        buffer = io.BytesIO()
        np.save(buffer, self.fingerprints, allow_pickle=False)
        atomic_write_bytes(folder / TRAIN_ROWS, buffer.getvalue())


def _coercion(dtype: str) -> str:
    """What a later frame's column is cast to before it is compared with a training column of ``dtype``."""
    return "datetime" if dtype.startswith("datetime64") else "float32" if dtype == "float32" else ""


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
    return TrainingRows([*info.features, info.target], rows,
                        {f.name: kind for f in info.schema if (kind := _coercion(f.dtype))})


def trained_by_one(frame: DataFrame, first: TrainingRows | None, second: TrainingRows | None) -> np.ndarray | None:
    """Per row of ``frame`` (features and target): whether exactly one of two models trained on it, the rows
    a fair comparison leaves out (a row both trained on favours neither). None when either model's rows
    are not known or ``frame`` lacks one of its columns."""
    if first is None or second is None:
        return None
    ours = first.hashes(frame)
    same = (second.columns, second.coerce) == (first.columns, first.coerce)  # the usual case: hashed once
    theirs = ours if same else second.hashes(frame)
    if ours is None or theirs is None:
        return None
    return np.isin(ours, first.fingerprints) ^ np.isin(theirs, second.fingerprints)
