"""The Predict page's Batch tab: a CSV or Parquet file checked against the served model, scored by the server.

The file is checked first with the server's own checks (``mloop.serving.batch_scoring.check_file``), every
value at fault listed with its row and column; a file with problems is not sent. One without is sent to
the deployment's ``POST /predict/batch`` in chunks (a progress bar follows them), and the scored rows come
back in the format they went in, to preview and download.
"""

from __future__ import annotations

import io
import math
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import streamlit as st

if TYPE_CHECKING:
    from mloop.bundle.loaded import LoadedModel
    from mloop.config import ProjectConfig
    from mloop.deploy.local import Deployment
    from mloop.serving.batch_scoring import FileCheck

MIN_CHUNK_ROWS = 50
MAX_CHUNK_ROWS = 5000
CHUNKS = 20  # a file is sent in about this many requests (the progress bar's steps), within the bounds above
PREVIEW_ROWS = 100
WHOLE = "-"  # the row of a problem of a whole column or of the file
FILE = "(the file)"  # the column of a problem of the file
CHECK_KEY = "predict_batch_check"
RESULT_KEY = "predict_batch_result"


@dataclass(frozen=True)
class Scored:
    """A scored file: its bytes in the format it came in, its rows, and the versions that scored them."""

    upload: str  # the upload's id (a new upload is a new file)
    content: bytes
    rows: int
    versions: tuple[str, ...]


def chunk_rows(total: int) -> int:
    """Rows per request: about ``CHUNKS`` requests, none smaller than ``MIN_CHUNK_ROWS`` or larger than
    ``MAX_CHUNK_ROWS``."""
    return max(MIN_CHUNK_ROWS, min(MAX_CHUNK_ROWS, math.ceil(total / CHUNKS)))


def chunks(data: bytes, fmt: str, size: int) -> Iterator[tuple[int, bytes]]:
    """The file cut into files of ``size`` rows each, in its format: ``(first row, bytes)``. A CSV's values
    travel as written (read as text, written back quoted where needed); a Parquet file keeps its schema."""
    if fmt == "csv":
        import pandas as pd

        frame = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)
        for start in range(0, len(frame), size):
            yield start, frame.iloc[start:start + size].to_csv(index=False).encode()
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    start = 0
    for batch in pq.ParquetFile(io.BytesIO(data)).iter_batches(batch_size=size):
        sink = io.BytesIO()
        pq.write_table(pa.Table.from_batches([batch]), sink)
        yield start, sink.getvalue()
        start += batch.num_rows


def joined(parts: list[bytes], fmt: str, versions: list[str] | None = None) -> bytes:
    """The scored chunks as one file: a CSV's header once, a Parquet file's tables concatenated (by column name).
    DataError when two CSV chunks came back with different columns (``versions``: the version that scored each
    chunk, named in the message), which one header cannot describe."""
    if fmt == "csv":
        headers = [part.split(b"\n", 1)[0].rstrip(b"\r") for part in parts]
        other = next((index for index, header in enumerate(headers) if header != headers[0]), None)
        if other is not None:
            from mloop.errors import DataError

            def by(index: int) -> str:
                return f" (scored by v{versions[index]})" if versions and index < len(versions) and versions[index] else ""

            raise DataError(f"the scored chunks do not have the same columns, so they cannot be joined into one CSV: "
                            f"chunk 1{by(0)} has {headers[0].decode(errors='replace')}, chunk {other + 1}{by(other)} "
                            f"has {headers[other].decode(errors='replace')}",
                            hint="the deployment changed version while the file was scored (a roll-out's candidate "
                                 "can answer with other columns, e.g. other classes): score the file again once one "
                                 "version serves, or send it as Parquet, whose chunks are joined by column name")
        return b"".join(part if index == 0 else part.split(b"\n", 1)[1] if b"\n" in part else b""
                        for index, part in enumerate(parts))
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.concat_tables([pq.read_table(io.BytesIO(part)) for part in parts], promote_options="default")
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def preview(content: bytes, fmt: str, rows: int = PREVIEW_ROWS) -> Any:
    """The first ``rows`` rows of a scored file as a DataFrame, the scores first (the file keeps its order)."""
    import pandas as pd

    if fmt == "csv":
        frame = pd.read_csv(io.BytesIO(content), nrows=rows)
    else:
        import pyarrow.parquet as pq

        frame = pq.read_table(io.BytesIO(content)).slice(0, rows).to_pandas()
    scores = [c for c in frame.columns if c == "prediction" or str(c).startswith("probability_")]
    return frame[scores + [c for c in frame.columns if c not in scores]]


def check_upload(cfg: ProjectConfig, model: LoadedModel, data: bytes, fmt: str) -> FileCheck:
    """The server's checks on an uploaded file, every problem with its row and column (nothing is scored)."""
    from mloop.serving.batch_scoring import check_file

    with tempfile.NamedTemporaryFile(prefix="mloop-ui-upload-", suffix=f".{fmt}", dir=cfg.scratch()) as handle:
        handle.write(data)
        handle.flush()
        return check_file(model, Path(handle.name), fmt)


def score(cfg: ProjectConfig, deployment: Deployment, data: bytes, fmt: str, total: int, upload: str) -> Scored | None:
    """Send the file to the deployment's batch endpoint chunk by chunk, with a progress bar (None: the error
    is shown and nothing is kept)."""
    from mloop.errors import MloopError
    from mloop.errors import listed
    from mloop.serving.batch_scoring import FORMATS
    from mloop.ui.deployment_client import post, refusal

    size = chunk_rows(total)
    bar = st.progress(0.0, text=f"Scoring {total} rows in requests of up to {size} ...")
    parts: list[bytes] = []
    versions: list[str] = []
    answered: list[str] = []  # the version that scored each chunk
    done = 0
    for start, body in chunks(data, fmt, size):
        try:
            reply = post(cfg, deployment, "/predict/batch", content=body, content_type=FORMATS[fmt], timeout=300.0)
        except MloopError as err:
            bar.empty()
            st.error(f"{err.message}" + (f"\n\n**Fix:** {err.hint}" if err.hint else ""))
            return None
        if not reply.ok:
            bar.empty()
            st.error(f"Rows {start} and after were refused; nothing is kept.\n\n" + refusal(deployment, reply))
            return None
        parts.append(reply.body)
        answered.append(reply.version or "")
        if reply.version and reply.version not in versions:
            versions.append(reply.version)
        done += int(reply.headers.get("x-rows-scored", "0") or 0)
        bar.progress(min(1.0, done / total if total else 1.0), text=f"Scored {done} of {total} rows")
    bar.empty()
    try:
        content = joined(parts, fmt, answered)
    except MloopError as err:
        st.error(f"{err.message}; nothing is kept.\n\n**Fix:** {err.hint}")
        return None
    return Scored(upload, content, done, tuple(versions))


def _show_check(check: FileCheck) -> None:
    import pandas as pd

    if check.problems:
        more = "" if check.complete else f" (the first {len(check.problems)}; there may be more)"
        count = f"{len(check.problems)} problem" + ("s" if len(check.problems) != 1 else "")
        st.error(f"{count}{more}: the server would refuse this file, so nothing was sent "
                 "or scored. Fix them and upload the file again.")
        st.dataframe(pd.DataFrame({"row": [WHOLE if p.row is None else str(p.row) for p in check.problems],
                                   "column": [p.column or FILE for p in check.problems],
                                   "problem": [p.message for p in check.problems]}), hide_index=True,
                     column_config={"problem": st.column_config.TextColumn(width="large")})
        st.caption(f"Rows are counted from 0, the first row under the header, as the server's messages count them; "
                   f"{WHOLE} is a whole column or the file.")
    if check.notes:
        st.warning("Worth knowing (the server takes these):\n\n"
                   + "\n".join(f"- **{note.column}**: {note.message}" for note in check.notes))


def tab(cfg: ProjectConfig, deployment: Deployment, model: LoadedModel) -> None:
    """The Batch tab for the version ``model`` the deployment serves."""
    from mloop.errors import listed
    from mloop.serving.batch_scoring import FORMATS

    st.markdown(f"A CSV or Parquet file with a column per feature ({len(model.feature_names)}: "
                f"{listed(model.feature_names, 8)}); other "
                "columns pass through. It is checked before anything is sent, then scored by the deployment.")
    st.caption("Rows scored here are not written to the prediction log and so not monitored (drift, live scores), "
               "and carry no request ids to send feedback for: send rows to POST /predict for that.")
    upload = st.file_uploader("CSV or Parquet file to score", type=["csv", "parquet"], key="predict_batch_file")
    if upload is None:
        return
    fmt = "parquet" if upload.name.lower().endswith(".parquet") else "csv"
    data = upload.getvalue()
    upload_id = f"{upload.file_id}:{model.name}:{model.version}"
    stored = st.session_state.get(CHECK_KEY)
    if stored is not None and stored[0] == upload_id:
        check = stored[1]
    else:
        with st.spinner("Checking the file against the model ..."):
            check = check_upload(cfg, model, data, fmt)
        st.session_state[CHECK_KEY] = (upload_id, check)
    _show_check(check)
    if not check.ok:
        return
    st.success(f"{check.rows} rows, every value of the type its feature takes.")
    if st.button(f"Score {check.rows} rows", key="predict_batch_score", type="primary"):
        scored = score(cfg, deployment, data, fmt, check.rows, upload_id)
        if scored is not None:
            st.session_state[RESULT_KEY] = scored
    scored = st.session_state.get(RESULT_KEY)
    if not isinstance(scored, Scored) or scored.upload != upload_id:
        return
    versions = " and ".join(f"v{v}" for v in scored.versions)
    st.success(f"Scored {scored.rows} rows with {deployment.model} {versions}."
               + (" The deployment changed version while the file was scored." if len(scored.versions) > 1 else ""))
    st.dataframe(preview(scored.content, fmt), hide_index=True)
    st.caption(f"The first {min(PREVIEW_ROWS, scored.rows)} rows; the download has all {scored.rows}.")
    stem = Path(upload.name).stem
    st.download_button("Download the scored file", data=scored.content, file_name=f"{stem}-scored.{fmt}",
                       mime=FORMATS[fmt], key="predict_batch_download", type="primary")
