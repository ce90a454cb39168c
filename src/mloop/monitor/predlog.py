"""The durable prediction log: every served row, its prediction and outlier score, as Parquet under ``.mloop/``.

On the request path a request costs one list append (``record``). A monitor thread ``flush``-es what
accumulated into one small Parquet file (written to a hidden temporary name, then renamed: a reader
or a crash never sees half a file), folds the small files of each finished hour into one
``hour-YYYYmmddTHH.parquet`` and deletes the oldest files once the log is over its size budget.
Feedback (true labels joined later) is logged the same way beside it, so both survive a restart.

A write that fails (a full disk, or any OSError) loses nothing at once: its table waits in memory and
the next flush writes the waiting tables first, in order, then the new one, so every row reaches the
disk exactly once. At most ``max_waiting_rows`` rows wait per log (``[monitor] log_waiting_rows``);
beyond that the oldest are dropped and counted. The first failure and the recovery are said on stderr.
A fold that cannot be written leaves its part files as they are (folded at a later rotation).

Layout of a model's monitor folder (``.mloop/monitor/<model>/``)::

    predictions/part-<time>-<seq>.parquet, predictions/hour-<YYYYmmddTHH>.parquet
    feedback/...                              the same, for true labels
    shadow/...                                the same, for a shadow candidate's answers (never returned)
    alerts.jsonl (.1, .2), status.json        written by the alert evaluator and the monitor loop

Columns of a prediction file: ``ts`` (UTC), ``request_id``, ``row`` (index within the request),
``version``, one column per feature, ``prediction``, ``outlier_score`` (the detector's
``score_samples``: lower is more anomalous) and ``outlier``. ``pd.read_parquet(folder)`` reads a
folder whose files share one schema; ``read_log`` reads any (a swap to a version with other features
changes the schema) and can keep only the rows since a time. During a canary both versions' answers are
in the prediction log, each row with the ``version`` that answered it. A shadow candidate's answers are
in the shadow log: ``ts``, ``request_id``, ``row``, ``version`` (the candidate), ``prediction`` (its
answer), ``served_version`` and ``served_prediction`` (the champion's answer, the one returned); the
features are the prediction log's rows of the same ``request_id``.
"""

from __future__ import annotations

import itertools
import os
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mloop._fs import WriteTrouble, atomic_path
from mloop.monitor.outliers import Scorer

# The columns of the logs (the features of the model sit between VERSION and PREDICTION).
TS, REQUEST_ID, ROW, VERSION, PREDICTION, OUTLIER_SCORE, OUTLIER = (
    "ts", "request_id", "row", "version", "prediction", "outlier_score", "outlier")
LABEL = "label"  # the feedback log: TS, REQUEST_ID, ROW, LABEL
SERVED_VERSION, SERVED_PREDICTION = "served_version", "served_prediction"  # the shadow log, beside VERSION, PREDICTION
META_COLUMNS = (TS, REQUEST_ID, ROW, VERSION, PREDICTION, OUTLIER_SCORE, OUTLIER)


def feature_columns(frame: Any) -> list[str]:
    """The feature columns of a prediction-log frame (every column that is not one of the log's own)."""
    return [c for c in frame.columns if c not in META_COLUMNS]


_PARTS = itertools.count(1)  # one sequence per process: two logs of one folder never write the same name
PART = re.compile(r"^part-(\d{8}T\d{6})-(\d+)\.parquet$")
HOUR = re.compile(r"^hour-(\d{8}T\d{2})\.parquet$")

FLUSH_CHUNK = 512  # requests per chunk of a flush (each chunk holds the interpreter a few ms at most)
WAITING_ROWS = 200_000  # rows per log kept in memory while they cannot be written (``[monitor] log_waiting_rows``)


def _write_parquet(table: Any, path: Path) -> None:
    """Write an Arrow table through a hidden temporary file and a rename (readers skip names starting with '.')."""
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        # Dictionary-encode only the few-valued columns: trying it on every float column of the
        # features took three quarters of the write time, for larger files.
        few_valued = [c for c in (VERSION, PREDICTION, LABEL, OUTLIER) if c in table.column_names]
        pq.write_table(table, tmp, compression="zstd", use_dictionary=few_valued)


def _request_columns(stamps: Any, ids: Any, counts: np.ndarray) -> dict[str, Any]:
    """``ts``, ``request_id`` and ``row`` for requests of ``counts`` rows each: the columns both logs start with."""
    import pyarrow as pa

    starts = np.repeat(np.cumsum(counts) - counts, counts)
    micros = np.repeat((np.asarray(stamps) * 1e6).astype(np.int64), counts)
    return {TS: pa.array(micros, type=pa.timestamp("us", tz="UTC")),
            REQUEST_ID: pa.array(np.repeat(np.asarray(ids, dtype=object), counts), type=pa.string()),
            ROW: pa.array((np.arange(int(counts.sum())) - starts).astype(np.int32))}


class RotatingParquetLog:
    """A folder of immutable Parquet files: small ones per flush, one per finished hour, bounded in size.

    ``save`` keeps the tables it could not write (``waiting_rows`` rows, at most ``max_waiting_rows``) and
    writes them first the next time; ``dropped_rows`` and ``failed_writes`` count since the log was made.
    ``what`` names the log in what it says on stderr.
    """

    def __init__(self, folder: Path, max_bytes: int = 512 * 1024 * 1024, *, what: str = "the log",
                 max_waiting_rows: int = WAITING_ROWS) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self.max_waiting_rows = max_waiting_rows
        self.waiting_rows = 0
        self.dropped_rows = 0
        self.failed_writes = 0
        self._waiting: deque[Any] = deque()  # Arrow tables not written yet, oldest first
        self._writes = WriteTrouble(what)
        self._folds = WriteTrouble(f"the hourly files of {what}")
        self._lock = threading.Lock()  # the logs of two versions of a model share this one across a swap

    @property
    def error(self) -> str:
        """Why writing the log fails now ("" while it works)."""
        return "; ".join(message for message in (self._writes.error, self._folds.error) if message)

    def save(self, table: Any = None) -> int:
        """Write the tables waiting from earlier saves, oldest first, then ``table``; returns the rows written.

        The first write that fails with an OSError ends the save: that table and those after it wait for
        the next save, and beyond ``max_waiting_rows`` the oldest waiting rows are dropped.
        """
        with self._lock:
            waited = self.waiting_rows
            if table is not None and table.num_rows:
                self._waiting.append(table)
                self.waiting_rows += table.num_rows
            written = 0
            while self._waiting:
                try:
                    self.write(self._waiting[0])
                except OSError as err:
                    self.failed_writes += 1
                    self._drop_oldest()
                    self._writes.failed(err, self.folder, f"{self.waiting_rows:,} rows kept in memory, "
                                                          "retried every monitoring update")
                    return written
                rows = self._waiting.popleft().num_rows
                self.waiting_rows -= rows
                written += rows
            self._writes.worked(self.folder, f"the {waited:,} rows kept in memory are written; "
                                             f"{self.dropped_rows:,} were dropped")
            return written

    def _drop_oldest(self) -> None:
        """Drop the oldest waiting rows until at most ``max_waiting_rows`` wait."""
        while self.waiting_rows > self.max_waiting_rows:
            excess = self.waiting_rows - self.max_waiting_rows
            oldest = self._waiting[0]
            if oldest.num_rows <= excess:
                self._waiting.popleft()
                dropped = oldest.num_rows
            else:
                self._waiting[0] = oldest.slice(excess)
                dropped = excess
            self.waiting_rows -= dropped
            self.dropped_rows += dropped

    def write(self, table: Any, now: float | None = None) -> Path:
        """Add an Arrow table as a new part file."""
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(time.time() if now is None else now))
        path = self.folder / f"part-{stamp}-{os.getpid()}{next(_PARTS):06d}.parquet"
        _write_parquet(table, path)
        return path

    def files(self) -> list[Path]:
        """The log's files, oldest first."""
        if not self.folder.is_dir():
            return []
        return sorted((p for p in self.folder.iterdir() if PART.match(p.name) or HOUR.match(p.name)),
                      key=lambda p: (_sort_key(p.name), p.name))  # parts of one second: in the order written

    def rotate(self, now: float | None = None) -> None:
        """Fold the part files of finished hours into one file per hour, then enforce the size budget.

        A fold that cannot be written (a full disk) leaves that hour's part files as they are; the budget
        is still enforced, which may free the space.
        """
        with self._lock:
            try:
                self._fold(now)
            except OSError as err:
                self._folds.failed(err, self.folder, "its part files stay as they are, folded at a later rotation")
            else:
                self._folds.worked(self.folder)
            self._enforce_budget()

    def _fold(self, now: float | None) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        current_hour = time.strftime("%Y%m%dT%H", time.gmtime(time.time() if now is None else now))
        by_hour: dict[str, list[Path]] = {}
        for path in self.files():
            match = PART.match(path.name)
            if match and match.group(1)[:11] < current_hour:
                by_hour.setdefault(match.group(1)[:11], []).append(path)
        for hour, parts in by_hour.items():
            target = self.folder / f"hour-{hour}.parquet"
            sources = ([target] if target.exists() else []) + parts
            # Files of versions with other features are aligned: a column one lacks is null there.
            tables = [pq.read_table(p) for p in sources]
            _write_parquet(pa.concat_tables(tables, promote_options="permissive"), target)
            for path in parts:  # after the rename: a crash in between leaves rows twice, never zero times
                path.unlink(missing_ok=True)

    def _enforce_budget(self) -> None:
        files = self.files()
        sizes = [p.stat().st_size for p in files]
        total = sum(sizes)
        for path, size in zip(files, sizes, strict=True):
            if total <= self.max_bytes or path == files[-1]:
                break
            path.unlink(missing_ok=True)
            total -= size


def _sort_key(name: str) -> str:
    match = PART.match(name) or HOUR.match(name)
    assert match is not None
    return match.group(1) + ("~" if name.startswith("part-") else "")  # an hour's file sorts before its hour's parts


def read_log(folder: Path, since: float | None = None) -> Any:
    """All rows of a log folder (files with different columns are aligned), optionally only those since ``since``."""
    import pandas as pd

    log = RotatingParquetLog(folder)
    frames = []
    cutoff_hour = time.strftime("%Y%m%dT%H", time.gmtime(since)) if since is not None else ""
    for path in log.files():
        if since is not None and _sort_key(path.name)[:11] < cutoff_hour:
            continue
        try:
            frames.append(pd.read_parquet(path))
        except FileNotFoundError:  # rotated away while we listed
            continue
        except Exception as err:  # noqa: BLE001 (pyarrow raises many types for a damaged file)
            import sys

            print(f"warning: skipped the unreadable log file {path} ({type(err).__name__}); "
                  "mloop doctor moves it aside", file=sys.stderr)
            continue
    if not frames:
        return pd.DataFrame()
    frame = pd.concat(frames, ignore_index=True)
    if since is not None and len(frame):
        frame = frame[frame[TS] >= pd.Timestamp(since, unit="s", tz="UTC")].reset_index(drop=True)
    return frame


def read_newest(log: RotatingParquetLog, columns: list[str], limit: int | None, *, distinct: str = "",
                version: str | None = None) -> Any:
    """The newest rows of a log (``columns`` only; with ``version``, only that version's rows), oldest first:
    whole files, newest first, until ``limit`` rows (or ``limit`` distinct values of the column ``distinct``)
    are in; ``None`` reads every file."""
    import pandas as pd

    frames: list[Any] = []
    seen = 0
    only = None if version is None else [(VERSION, "==", version)]
    for path in reversed(log.files()):
        try:
            frame = pd.read_parquet(path, columns=columns, filters=only)
        except FileNotFoundError:  # rotated away while we listed
            continue
        except (ValueError, KeyError, OSError):  # an old file without these columns, or a damaged one
            continue
        frames.append(frame)
        seen += frame[distinct].nunique() if distinct else len(frame)
        if limit is not None and seen >= limit:
            break
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames[::-1], ignore_index=True)


@dataclass
class Flushed:
    """What a flush took in (Arrow tables; None where nothing came) and the prediction rows it wrote (those
    that waited from earlier flushes included: on a full disk, fewer than it took in, or none)."""

    predictions: Any = None
    feedback: Any = None
    rows_written: int = 0


class PredictionLog:
    """Served requests, recorded in memory per request and written in batches by the monitor thread.

    ``max_waiting_rows`` bounds, per log, the rows kept in memory while they cannot be written.
    """

    def __init__(self, folder: Path, features: list[str], max_bytes: int = 512 * 1024 * 1024, *,
                 categorical: list[str] | tuple[str, ...] = (), max_waiting_rows: int = WAITING_ROWS) -> None:
        self.predictions = RotatingParquetLog(folder / "predictions", max_bytes, what="the prediction log",
                                              max_waiting_rows=max_waiting_rows)
        self.feedback = RotatingParquetLog(folder / "feedback", max(max_bytes // 8, 1 << 20), what="the feedback log",
                                           max_waiting_rows=max_waiting_rows)
        self.shadow = RotatingParquetLog(folder / "shadow", max(max_bytes // 8, 1 << 20), what="the shadow log",
                                         max_waiting_rows=max_waiting_rows)
        self.features = features
        self.categorical = list(categorical)  # logged as the strings requests sent, in this order in ``text``
        self._pending: list[tuple[float, str, str, np.ndarray, np.ndarray, np.ndarray | None]] = []
        self._labels: list[tuple[float, str, list[Any]]] = []
        self._shadow: list[tuple[float, str, str, np.ndarray, str, np.ndarray]] = []
        self._lock = threading.Lock()
        self._shadow_lock = threading.Lock()  # the shadow worker appends; never held while writing
        self._rng = np.random.default_rng()

    def successor(self, features: list[str], categorical: list[str] | tuple[str, ...] = ()) -> PredictionLog:
        """The log of the next version served (other features, maybe): the same files, and the same rows
        waiting to be written."""
        log = PredictionLog(self.predictions.folder.parent, features, categorical=categorical)
        log.predictions, log.feedback, log.shadow = self.predictions, self.feedback, self.shadow
        return log

    def record(self, request_id: str, version: str, rows: np.ndarray, labels: np.ndarray,
               text: np.ndarray | None = None) -> None:
        """Remember one served request (called on the event loop: an append, nothing else)."""
        self._pending.append((time.time(), request_id, version, rows, labels, text))

    def record_feedback(self, request_id: str, truth: list[Any]) -> None:
        self._labels.append((time.time(), request_id, truth))

    def record_shadow(self, request_id: str, version: str, labels: np.ndarray, served_version: str,
                      served: np.ndarray) -> None:
        """What a shadow candidate answered for a request, beside what the champion answered (the shadow
        worker's thread)."""
        with self._shadow_lock:
            self._shadow.append((time.time(), request_id, version, labels, served_version, served))

    def flush(self, score: Scorer | None = None, max_scored: int = 0) -> Flushed:
        """Write what accumulated, after what waits from flushes that could not write (see ``RotatingParquetLog.save``).

        ``score`` gives each row's outlier score and flag (the bundled detector's), computed here, off
        the request path. With ``max_scored`` > 0 and more rows than that, a uniform random sample of
        that many rows is scored and the others get no score (null): the detector's cost per row is
        the largest part of monitoring, and this bounds it under heavy traffic.
        """
        with self._lock:
            pending, self._pending = self._pending, []
            labels, self._labels = self._labels, []
            with self._shadow_lock:
                shadow, self._shadow = self._shadow, []
            rate = 1.0
            if max_scored > 0 and pending:
                total = sum(len(p[4]) for p in pending)
                rate = min(1.0, max_scored / total)
            predictions = self._predictions_table(pending, score, rate) if pending else None
            feedback = self._feedback_table(labels) if labels else None
            written = self.predictions.save(predictions)
            self.feedback.save(feedback)
            if shadow or self.shadow.waiting_rows:
                self.shadow.save(self._shadow_table(shadow) if shadow else None)
            return Flushed(predictions, feedback, written)

    def _predictions_table(self, pending: list[tuple[float, str, str, np.ndarray, np.ndarray, np.ndarray | None]],
                           score: Scorer | None, rate: float = 1.0) -> Any:
        """One Arrow table (one Parquet file) for all of ``pending``, built (and scored) in chunks of requests.

        Between chunks the thread sleeps for a moment: the event loop gets the interpreter back within
        a chunk's time (a few ms), so a large flush never stalls requests for its whole length.
        """
        import pyarrow as pa

        tables = []
        for start in range(0, len(pending), FLUSH_CHUNK):
            tables.append(self._chunk_table(pending[start:start + FLUSH_CHUNK], score, rate))
            time.sleep(0.0005)
        return pa.concat_tables(tables)

    def _chunk_table(self, pending: list[tuple[float, str, str, np.ndarray, np.ndarray, np.ndarray | None]],
                     score: Scorer | None, rate: float = 1.0) -> Any:
        import pyarrow as pa

        stamps, ids, versions, row_arrays, label_arrays, texts = zip(*pending, strict=True)
        counts = np.fromiter(map(len, label_arrays), dtype=np.int64, count=len(pending))
        rows = np.concatenate(row_arrays)
        total = rows.shape[0]
        columns = _request_columns(stamps, ids, counts)
        columns[VERSION] = pa.array(np.repeat(np.asarray(versions, dtype=object), counts), type=pa.string())
        by_feature = np.ascontiguousarray(rows.T)  # one transposing copy, then a contiguous array per column
        text = np.concatenate(texts) if self.categorical and texts[0] is not None else None
        for index, name in enumerate(self.features):
            if text is not None and name in self.categorical:
                columns[name] = pa.array(text[:, self.categorical.index(name)].tolist(), type=pa.string())
            else:
                columns[name] = pa.array(by_feature[index])
        labels = np.concatenate(label_arrays)
        columns[PREDICTION] = pa.array(labels if labels.dtype != object else labels.tolist())
        if score is not None:
            scores, flags = np.full(total, np.nan), np.zeros(total, dtype=bool)
            chosen = np.isfinite(rows).all(axis=1)
            if rate < 1.0:
                chosen &= self._rng.random(total) < rate
            if chosen.any():
                scores[chosen], flags[chosen] = score(rows[chosen], None if text is None else text[chosen])
            columns[OUTLIER_SCORE] = pa.array(scores)
            columns[OUTLIER] = pa.array(flags, mask=~chosen)  # null: not scored
        return pa.table(columns)

    def _feedback_table(self, labels: list[tuple[float, str, list[Any]]]) -> Any:
        import pyarrow as pa

        stamps, ids, truths = zip(*labels, strict=True)
        columns = _request_columns(stamps, ids, np.fromiter(map(len, truths), dtype=np.int64, count=len(labels)))
        columns[LABEL] = pa.array([label for truth in truths for label in truth])
        return pa.table(columns)

    @staticmethod
    def _shadow_table(shadow: list[tuple[float, str, str, np.ndarray, str, np.ndarray]]) -> Any:
        import pyarrow as pa

        stamps, ids, versions, answers, served_versions, served = zip(*shadow, strict=True)
        counts = np.fromiter(map(len, answers), dtype=np.int64, count=len(shadow))
        columns = _request_columns(stamps, ids, counts)
        for name, values in ((VERSION, versions), (SERVED_VERSION, served_versions)):
            columns[name] = pa.array(np.repeat(np.asarray(values, dtype=object), counts), type=pa.string())
        for name, arrays in ((PREDICTION, answers), (SERVED_PREDICTION, served)):
            joined = np.concatenate(arrays)
            columns[name] = pa.array(joined if joined.dtype != object else joined.tolist())
        return pa.table(columns)

    def rotate(self) -> None:
        with self._lock:
            self.predictions.rotate()
            self.feedback.rotate()
            if self.shadow.folder.is_dir():
                self.shadow.rotate()
