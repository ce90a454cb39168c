"""Batch scoring: a CSV or Parquet file in, the same rows with predictions out, in bounded memory.

The upload is spooled to a temporary file as it arrives; it is then read, validated and scored
chunk by chunk into another temporary file, which is streamed back. Memory stays at a few chunks
whatever the number of rows. Columns that are not features pass through unchanged (a Parquet file's
with their Arrow types); the scores are added as ``prediction`` and ``probability_<class>`` columns,
replacing columns of those names. A file that is not what it says, has two columns of one name, a CSV
separated by ';' or tabs instead of commas, a CSV row with more values than the header has names, or a
nested (list, struct, map) feature column is refused with a 4xx saying what to fix.

``check_file`` runs the same checks without scoring and reports every value at fault with its row and
column (the server stops at the first), with notes on what is taken but unusual (unknown categories,
numbers beyond the training range, columns that pass through): what the web app shows before it sends a file.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from mloop.bundle.loaded import Feature, LoadedModel, Rows
from mloop.errors import listed
from mloop.serving.protocol import RequestError, check_values, rows_from_columns

CHUNK_ROWS = 10_000
BLOCK_ROWS = 500  # a chunk with faults is checked again in blocks of this many rows (``check_file``)
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
        _check_separator(model, source, header)
        for chunk in pd.read_csv(source, chunksize=CHUNK_ROWS, dtype=dict.fromkeys(text, str) or None):
            if not isinstance(chunk.index, pd.RangeIndex):  # pandas made the values beyond the names an index
                raise RequestError(f"the CSV's rows have more values than its header has names ({len(header)}); "
                                   "name every column in the first line", field="file", status=400)
            yield _typed_text(model, chunk)
    except UnicodeDecodeError as err:
        raise RequestError("the CSV is not UTF-8 text; save it as UTF-8", field="file", status=400) from err
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as err:
        raise RequestError(f"the CSV cannot be read: {str(err).splitlines()[0]}", field="file", status=400) from err


SEPARATORS = {";": "';'", "\t": "tab", "|": "'|'"}  # what a CSV is sometimes saved with instead of commas


def _check_separator(model: LoadedModel, source: Path, header: list[Any]) -> None:
    """Refuse, as one problem of the file, a CSV separated by something else than commas (a spreadsheet saved with
    ';'): its header read on commas lacks features that its first line split on that separator names. A file
    with every feature among its comma-separated names is never refused here."""
    features = [f.name for f in model.features]
    if all(name in header for name in features):
        return
    with open(source, encoding="utf-8-sig", newline="") as handle:
        first = handle.readline(1 << 20).rstrip("\r\n")  # a header longer than 1 MB is no CSV header
    for separator, called in SEPARATORS.items():
        names = [name.strip().strip('"') for name in first.split(separator)]
        found = [name for name in features if name in names and name not in header]
        if len(names) > 1 and found:
            raise RequestError(f"the file looks {called}-separated: its first line splits on {called} into "
                               f"{len(names)} columns ({len(found)} of the model's features among them), but a CSV "
                               "is read comma-separated; save it comma-separated (or as Parquet) and send it again",
                               field="file", status=400)


def _typed_text(model: LoadedModel, chunk: Any) -> Any:
    """A CSV has no types: pandas reads a column of numbers with one word among them as text, every value a
    string. Each value of a numeric or boolean feature that reads as one is taken as one (``"12"``, ``"true"``),
    so that only the word is refused, and named with its row."""
    import pandas as pd

    for feature in model.features:
        if feature.type == "categorical" or feature.name not in chunk.columns:
            continue
        column = chunk[feature.name]
        if column.dtype == object or pd.api.types.is_string_dtype(column):
            kind = feature.type
            chunk[feature.name] = column.astype(object).map(lambda value: _read_text(value, kind))
    return chunk


def _read_text(value: Any, kind: str) -> Any:
    if not isinstance(value, str):
        return value
    text = value.strip()
    if kind == "boolean" and text.lower() in ("true", "false"):
        return text.lower() == "true"
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    return value


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
    labels, proba = model.predict(_validated(model, chunk, first_row=first_row))
    scores: dict[str, Any] = {"prediction": labels}
    if proba is not None:
        for index, cls in enumerate(model.classes):
            scores[f"probability_{cls}"] = proba[:, index]
    return scores


def _validated(model: LoadedModel, chunk: Any, *, first_row: int) -> Rows:
    """A chunk's feature rows, each value checked against its feature's type; RequestError names the first
    value at fault (its column and, for a value, its row)."""
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
        return rows_from_columns(model, columns, first_row=first_row)
    for name in names:
        column = features[name]
        if pd.api.types.is_bool_dtype(column):
            raise RequestError(f"column {name!r} holds true/false values; feature {name!r} takes numbers", field=name)
        if not pd.api.types.is_numeric_dtype(column):
            bad = (pd.to_numeric(column, errors="coerce").isna() & column.notna()).to_numpy()
            if bad.any():  # (text that reads as numbers is numbers: a CSV has no types)
                row = int(np.argmax(bad)) + first_row
                raise RequestError(f"column {name!r} has a value that is not a number (row {row})", field=name,
                                   row=row)
    return check_values(Rows(features.to_numpy(dtype=np.float64)), model, first_row=first_row)


# ------------------------------------------------------------------------------------------ checking a file


@dataclass(frozen=True)
class Problem:
    """Something about a file to score: what, in which column ("" for the file) and row (counted from 0 among
    the data rows, as the server's messages count them; None for a whole column or the file)."""

    message: str
    column: str = ""
    row: int | None = None


@dataclass
class FileCheck:
    """What ``check_file`` found in a file before it is scored."""

    rows: int = 0  # the rows checked (all of them, unless it stopped at the limit)
    problems: list[Problem] = field(default_factory=list)  # what the server refuses: fix these to score the file
    # what it accepts, but a user should know: columns that are not features (they pass through), categories
    # training never saw, numbers outside the training range
    notes: list[Problem] = field(default_factory=list)
    complete: bool = True  # False: it stopped after ``limit`` problems (there may be more)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_file(model: LoadedModel, source: Path, fmt: str, *, limit: int = 100) -> FileCheck:
    """Every problem that would make the server refuse ``source`` (``fmt`` csv or parquet), found by the
    server's own checks without scoring anything: a missing feature column, a value of the wrong type, a
    missing value where the model takes none, a file it cannot read. Each value at fault is reported with
    its row and column (the check goes on past it: the value is set aside and the rows checked again), up
    to ``limit`` problems. Notes say what is accepted but worth knowing."""
    check = FileCheck()
    unseen: dict[str, list[tuple[int, Any]]] = {}
    outside: dict[str, list[tuple[int, Any]]] = {}
    faulty_columns: set[str] = set()  # columns at fault as a whole (reported once, not once per chunk)
    try:
        chunks = _csv_chunks(model, source) if fmt == "csv" else (frame for _, frame in _parquet_chunks(model, source))
        for chunk in chunks:
            if check.rows == 0 and not _check_columns(model, chunk, check):
                return check
            if not _check_chunk(model, chunk, check, limit, unseen, outside, faulty_columns):
                check.complete = False
                break
            check.rows += len(chunk)
    except RequestError as err:  # the file as a whole: unreadable, two columns of one name, nested values
        check.problems.append(Problem(err.message, err.field if err.field != "file" else "", err.row))
        return check
    if check.rows == 0 and check.complete:
        check.problems.append(Problem("the file has no rows to score"))
    check.problems.sort(key=lambda p: (-1 if p.row is None else p.row, p.column))
    for name, found in unseen.items():
        row, value = found[0]
        check.notes.append(Problem(f"{len(found)} value(s) training never saw, first {value!r} in row {row}; "
                                   "the model answers them as it handles an unknown category", name, row))
    schema = {spec.name: spec for spec in model.info.schema}
    for name, found in outside.items():
        row, value = found[0]
        spec = schema[name]
        check.notes.append(Problem(f"{len(found)} value(s) outside the training range {spec.min:g} to {spec.max:g}, "
                                   f"first {value!r} in row {row}", name, row))
    return check


def _check_columns(model: LoadedModel, chunk: Any, check: FileCheck) -> bool:
    """The file's columns: a feature it lacks is a problem (and nothing else is checked); one that is not a
    feature a note."""
    names = [f.name for f in model.features]
    for name in names:
        if name not in chunk.columns:
            check.problems.append(Problem(f"column {name!r} is missing; the model needs every feature "
                                          f"({len(names)}: {listed(names, 5)})",
                                          name))
    for name in chunk.columns:
        if name not in set(names):
            check.notes.append(Problem(f"column {str(name)!r} is not a feature of the model; it is passed through to "
                                       "the scored file unchanged", str(name)))
    return not check.problems


def _check_chunk(model: LoadedModel, chunk: Any, check: FileCheck, limit: int,
                 unseen: dict[str, list[tuple[int, Any]]], outside: dict[str, list[tuple[int, Any]]],
                 faulty_columns: set[str]) -> bool:
    """Check one chunk as the server does. A chunk without fault is checked once; one with faults again in blocks
    of ``BLOCK_ROWS`` rows, where each value at fault is recorded, replaced by one the model takes and its block
    checked again, so every one is found at the cost of re-checking a block, not the chunk. False once ``limit``
    problems are recorded."""
    features = chunk[[f.name for f in model.features]]
    first_row = check.rows
    try:
        rows = _validated(model, features, first_row=first_row)
    except RequestError:
        pass
    else:
        _notes(model, chunk, rows, first_row, unseen, outside)
        return True
    for start in range(0, len(chunk), BLOCK_ROWS):
        done = _check_block(model, chunk.iloc[start:start + BLOCK_ROWS], first_row + start, check, limit, unseen,
                            outside, faulty_columns)
        if done is not None:
            return done
    return True


def _check_block(model: LoadedModel, block: Any, first_row: int, check: FileCheck, limit: int,
                 unseen: dict[str, list[tuple[int, Any]]], outside: dict[str, list[tuple[int, Any]]],
                 faulty_columns: set[str]) -> bool | None:
    """``_check_chunk`` on a block of its rows: None when the block is checked, True when the rest of the chunk
    cannot be (a column at fault as a whole, or a value no replacement cures), False at ``limit`` problems."""
    features = block[[f.name for f in model.features]].copy()
    positions = {f.name: i for i, f in enumerate(model.features)}
    seen: set[tuple[str, int | None]] = set()
    while True:
        try:
            rows = _validated(model, features, first_row=first_row)
            break
        except RequestError as err:
            where = (err.field, err.row)
            if where in seen:  # the value set in its place is refused too: the rest of the chunk cannot be checked
                return True
            if err.row is None and err.field in faulty_columns:  # said for an earlier chunk already
                return True
            check.problems.append(Problem(err.message, err.field, err.row))
            if len(check.problems) >= limit:
                return False
            if err.row is None or err.field not in positions:
                faulty_columns.add(err.field)
                return True
            seen.add(where)
            if features[err.field].dtype != object:
                features[err.field] = features[err.field].astype(object)
            features.iat[err.row - first_row, positions[err.field]] = _acceptable(model.features[positions[err.field]],
                                                                                 model)
    _notes(model, block, rows, first_row, unseen, outside)
    return None


def _acceptable(feature: Feature, model: LoadedModel) -> Any:
    """A value the feature takes (set in place of one at fault, so the check goes on)."""
    if feature.type == "categorical":
        return feature.categories[0] if feature.categories else ""
    if feature.type == "boolean":
        return False
    value = model.profile.typical(feature.name) if model.profile is not None else 0.0
    return round(value) if feature.type == "integer" else value


def _notes(model: LoadedModel, chunk: Any, rows: Rows, first_row: int,
           unseen: dict[str, list[tuple[int, Any]]], outside: dict[str, list[tuple[int, Any]]]) -> None:
    """Values the model takes but training never saw: unknown categories, numbers beyond the training range."""
    schema = {spec.name: spec for spec in model.info.schema}
    for index, feature in enumerate(model.features):
        column = rows.values[:, index]
        if feature.type == "categorical":
            found = np.flatnonzero(column == -1.0)
            where = unseen
        else:
            spec = schema.get(feature.name)
            if feature.type == "boolean" or spec is None or spec.min is None or spec.max is None:
                continue
            with np.errstate(invalid="ignore"):
                found = np.flatnonzero((column < spec.min) | (column > spec.max))
            where = outside
        if found.size:
            values = chunk[feature.name].to_numpy()
            where.setdefault(feature.name, []).extend(
                (int(i) + first_row, _plain(values[i])) for i in found.tolist())


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _plain(value: Any) -> Any:
    """A value pandas read, as the JSON value it stands for (numpy scalars become Python ones)."""
    return value.item() if hasattr(value, "item") else value
