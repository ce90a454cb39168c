"""A table written as a data version: the same rows give the same bytes, so the same DVC version.

Parquet as pyarrow writes it holds no wall-clock time: its footer names the writer by version only
(``created_by``) and the pandas schema it keeps describes the columns. With a fixed row order, fixed
compression and one row group per so many rows, writing a table twice gives the same file, and
``dvc add`` of an unchanged snapshot records no new version. The file is written to a hidden temporary
name and renamed (``_fs.atomic_path``): a reader, or DVC, never sees half of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mloop._fs import atomic_path
from mloop.data.versions import md5_of

ROW_GROUP_ROWS = 128 * 1024


def write_table(frame: Any, path: Path) -> str:
    """Write a DataFrame to ``path`` as Parquet, reproducibly and atomically; returns its md5 (DVC's hash)."""
    import pyarrow.parquet as pq

    table = _arrow_table(frame)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", compression_level=3, row_group_size=ROW_GROUP_ROWS,
                       use_dictionary=True, write_statistics=True)
    return md5_of(path)


def _arrow_table(frame: Any) -> Any:
    """``frame`` as an Arrow table with pandas' schema kept. Columns of times with a time zone go to Arrow as
    UTC and get their zone back there: converting them directly reads ``Series.values``, which pandas warns
    about (it drops the zone)."""
    import pandas as pd
    import pyarrow as pa

    zoned = {name: str(frame[name].dt.tz) for name in frame.columns if isinstance(frame[name].dtype, pd.DatetimeTZDtype)}
    table = pa.Table.from_pandas(frame.assign(**{name: frame[name].dt.tz_convert(None) for name in zoned}),
                                 preserve_index=False)
    for name, zone in zoned.items():
        index = table.schema.get_field_index(name)
        kind = pa.timestamp(table.column(index).type.unit, tz=zone)
        table = table.set_column(index, pa.field(name, kind), table.column(index).cast(kind))
    return table
