"""Batch scoring: a CSV or Parquet file in, the same rows with predictions out, in bounded memory.

The upload is spooled to a temporary file as it arrives; it is then read, validated and scored
chunk by chunk into another temporary file, which is streamed back. Memory stays at a few chunks
whatever the number of rows. Columns that are not features pass through unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from mloop.bundle.loaded import LoadedModel, Rows
from mloop.serving.protocol import RequestError, check_values, rows_from_columns

CHUNK_ROWS = 10_000
FORMATS = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet"}


def detect_format(content_type: str, query: str) -> str:
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if key == "format":
            if value not in FORMATS:
                raise RequestError(f"format {value!r} is not supported; use csv or parquet", field="format")
            return value
    kind = content_type.split(";")[0].strip().lower()
    if kind in ("text/csv", "application/csv"):
        return "csv"
    if kind in ("application/vnd.apache.parquet", "application/x-parquet", "application/parquet"):
        return "parquet"
    raise RequestError(f"content type {kind or 'none'!r} is not a batch format; send text/csv or "
                       "application/vnd.apache.parquet, or add ?format=csv|parquet", field="content-type", status=415)


def score_file(model: LoadedModel, source: Path, fmt: str, out: IO[bytes]) -> int:
    """Score ``source`` into ``out`` (same format); returns the number of rows. Raises RequestError."""
    write = _csv_writer(out) if fmt == "csv" else _parquet_writer(out)
    rows = 0
    try:
        text = [model.features[i].name for i in model.categorical]  # read as written ("007" stays a string)
        for chunk in _chunks(source, fmt, text):
            if len(chunk):
                scored = _score(model, chunk, first_row=rows)
                write(scored)
                rows += len(scored)
    finally:
        write(None)
    if rows == 0:
        raise RequestError("the file has no rows to score", field="file")
    return rows


def _csv_writer(out: IO[bytes]) -> Any:
    state = {"header": True}

    def write(frame: Any) -> None:
        if frame is not None:
            frame.to_csv(out, header=state["header"], index=False)
            state["header"] = False

    return write


def _parquet_writer(out: IO[bytes]) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    state: dict[str, Any] = {"writer": None}

    def write(frame: Any) -> None:
        if frame is None:  # the end: close the file
            if state["writer"] is not None:
                state["writer"].close()
            return
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if state["writer"] is None:
            state["writer"] = pq.ParquetWriter(out, table.schema)
        state["writer"].write_table(table)

    return write


def _chunks(source: Path, fmt: str, text_columns: list[str]) -> Iterator[Any]:
    import pandas as pd

    if fmt == "csv":
        try:
            yield from pd.read_csv(source, chunksize=CHUNK_ROWS, dtype=dict.fromkeys(text_columns, str) or None)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as err:
            raise RequestError(f"the CSV cannot be read: {str(err).splitlines()[0]}", field="file", status=400) from err
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(source)
        for batch in parquet.iter_batches(batch_size=CHUNK_ROWS):
            yield batch.to_pandas()
    except (pa.ArrowInvalid, OSError) as err:
        raise RequestError(f"the Parquet file cannot be read: {err}", field="file", status=400) from err


def _score(model: LoadedModel, chunk: Any, *, first_row: int) -> Any:
    import pandas as pd

    names = [f.name for f in model.features]
    missing = [n for n in names if n not in chunk.columns]
    if missing:
        raise RequestError(f"column {missing[0]!r} is missing" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
                           field=missing[0])
    features = chunk[names]
    if model.categorical or any(f.type == "boolean" for f in model.features):
        # Checked value by value against each feature's type (a file's missing value is NaN: null here).
        columns = [[None if _missing(v) else _plain(v) for v in features[f.name].tolist()] for f in model.features]
        rows = rows_from_columns(model, columns, first_row=first_row)
    else:
        for name in names:
            if not pd.api.types.is_numeric_dtype(features[name]) or pd.api.types.is_bool_dtype(features[name]):
                bad = pd.to_numeric(features[name], errors="coerce").isna() & features[name].notna()
                row = int(np.argmax(bad.to_numpy())) + first_row
                raise RequestError(f"column {name!r} has a value that is not a number (row {row})", field=name)
        rows = check_values(Rows(features.to_numpy(dtype=np.float64)), model, first_row=first_row)
    labels, proba = model.predict(rows)
    scored = chunk.copy()
    scored["prediction"] = labels
    if proba is not None:
        for index, cls in enumerate(model.classes):
            scored[f"probability_{cls}"] = proba[:, index]
    return scored


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _plain(value: Any) -> Any:
    """A value pandas read, as the JSON value it stands for (numpy scalars become Python ones)."""
    return value.item() if hasattr(value, "item") else value
