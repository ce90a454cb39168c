"""Batch scoring: a CSV or Parquet file in, the same rows with predictions out, in bounded memory.

The upload is spooled to a temporary file as it arrives; it is then read, validated and scored
chunk by chunk into another temporary file, which is streamed back. Memory stays at a few chunks
whatever the number of rows. Columns that are not features pass through unchanged (a Parquet file's
with their Arrow types); the scores are added as ``prediction`` and ``probability_<class>`` columns,
replacing columns of those names. A file that is not what it says, has two columns of one name, a CSV
row with more values than the header has names, or a nested (list, struct, map) feature column is
refused with a 4xx saying what to fix.
"""

from __future__ import annotations

import math
from collections import Counter
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
    rows = _score_csv(model, source, out) if fmt == "csv" else _score_parquet(model, source, out)
    if rows == 0:
        raise RequestError("the file has no rows to score", field="file")
    return rows


def _score_csv(model: LoadedModel, source: Path, out: IO[bytes]) -> int:
    rows = 0
    for chunk in _csv_chunks(model, source):
        if len(chunk):
            for name, values in _score(model, chunk, first_row=rows).items():
                chunk[name] = values
            chunk.to_csv(out, header=rows == 0, index=False)
            rows += len(chunk)
    return rows


def _csv_chunks(model: LoadedModel, source: Path) -> Iterator[Any]:
    import pandas as pd

    text = [model.features[i].name for i in model.categorical]  # read as written ("007" stays a string)
    try:
        header = pd.read_csv(source, header=None, nrows=1, dtype=str).iloc[0].tolist()  # the names as written
        _check_names([name for name in header if isinstance(name, str)])
        for chunk in pd.read_csv(source, chunksize=CHUNK_ROWS, dtype=dict.fromkeys(text, str) or None):
            if not isinstance(chunk.index, pd.RangeIndex):  # pandas made the values beyond the names an index
                raise RequestError(f"the CSV's rows have more values than its header has names ({len(header)}); "
                                   "name every column in the first line", field="file", status=400)
            yield chunk
    except UnicodeDecodeError as err:
        raise RequestError("the CSV is not UTF-8 text; save it as UTF-8", field="file", status=400) from err
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as err:
        raise RequestError(f"the CSV cannot be read: {str(err).splitlines()[0]}", field="file", status=400) from err


def _score_parquet(model: LoadedModel, source: Path, out: IO[bytes]) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = 0
    writer: pq.ParquetWriter | None = None
    try:
        for batch, chunk in _parquet_chunks(model, source):
            if not len(chunk):
                continue
            table = pa.Table.from_batches([batch])
            for name, values in _score(model, chunk, first_row=rows).items():
                index, column = table.schema.get_field_index(name), pa.array(values)
                table = table.set_column(index, name, column) if index >= 0 else table.append_column(name, column)
            if writer is None:
                writer = pq.ParquetWriter(out, table.schema)
            writer.write_table(table)
            rows += len(chunk)
    finally:
        if writer is not None:
            writer.close()
    return rows


def _parquet_chunks(model: LoadedModel, source: Path) -> Iterator[tuple[Any, Any]]:
    """The file's record batches, each with its pandas frame."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(source)
        schema = parquet.schema_arrow
        _check_names(schema.names)
        for feature in model.features:
            kind = schema.field(feature.name).type if feature.name in schema.names else None
            if kind is not None and pa.types.is_nested(kind):
                raise RequestError(f"column {feature.name!r} holds {kind} values; a feature takes one value per row "
                                   f"({feature.type})", field=feature.name)
        for batch in parquet.iter_batches(batch_size=CHUNK_ROWS):
            yield batch, batch.to_pandas()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OSError) as err:
        raise RequestError(f"the Parquet file cannot be read: {err}", field="file", status=400) from err


def _check_names(names: list[str]) -> None:
    """Refuse a file with two columns of one name: which would be the feature, and what would come back?"""
    repeated = sorted(name for name, count in Counter(names).items() if count > 1)
    if repeated:
        listed = ", ".join(repr(name) for name in repeated)
        raise RequestError(f"the file has more than one column named {listed}; every column needs a name of its "
                           "own: rename or drop the duplicates and send it again", field=repeated[0])


def _score(model: LoadedModel, chunk: Any, *, first_row: int) -> dict[str, Any]:
    """The scores of a chunk's rows by column name: ``prediction`` and, for a classifier, ``probability_<class>``."""
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
    scores: dict[str, Any] = {"prediction": labels}
    if proba is not None:
        for index, cls in enumerate(model.classes):
            scores[f"probability_{cls}"] = proba[:, index]
    return scores


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _plain(value: Any) -> Any:
    """A value pandas read, as the JSON value it stands for (numpy scalars become Python ones)."""
    return value.item() if hasattr(value, "item") else value
