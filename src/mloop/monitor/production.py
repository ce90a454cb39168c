"""Production data to train on: the served rows joined with their true labels, one row per predicted row.

The prediction log and the feedback log (``predlog``) are joined on ``(request_id, row)``: a row of a
request and the label sent for it. Each counts once, whatever the files hold: a row logged twice (a
rotation that crashed between writing an hour's file and removing its parts) is taken once, the first
time it was logged; a label logged twice is taken once, the first one (labels are final, as the server's
``FeedbackJoiner`` says: the first ones count). Labels for rows outside the predictions read (older than
the window, or rotated away) are left out.

The result has the model's feature columns as the requests carried them (categories as the strings
sent), the label under the model's target name, then ``served_version``, ``request_id`` and
``served_at`` (UTC). Its rows are sorted by ``served_at``, ``request_id`` and the row's place in its
request, so the same logs give the same table, row for row, however the files were split or rotated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mloop.monitor.predlog import LABEL, REQUEST_ID, ROW, TS, VERSION

SERVED_VERSION, SERVED_AT = "served_version", "served_at"
# The columns a snapshot adds to the features and the label: a pipeline that trains on it drops them.
PROVENANCE = (SERVED_VERSION, REQUEST_ID, SERVED_AT)


@dataclass
class LabelledRows:
    """The joined table and what went into it (counts of predicted rows, not of requests)."""

    frame: Any  # a DataFrame: features, target, served_version, request_id, served_at
    target: str
    predicted: int = 0  # distinct predicted rows read
    labelled: int = 0  # of them, with a label
    repeated_predictions: int = 0  # rows logged more than once, taken once
    repeated_labels: int = 0  # labels for a row labelled already: the first one counts
    unmatched_labels: int = 0  # labels for no row read (older than the window, or rotated away)
    versions: list[str] = field(default_factory=list)  # the versions that served the rows in the table

    @property
    def unlabelled(self) -> int:
        """Predicted rows with no label (kept in ``frame`` only when asked)."""
        return self.predicted - self.labelled


def join_labels(predictions: Any, feedback: Any, *, features: list[str], target: str,
                include_unlabelled: bool = False) -> LabelledRows:
    """One row per predicted row with its first label (see the module docstring).

    ``predictions`` and ``feedback`` are frames of the two logs (``predlog.read_log``); ``features`` are
    the model's feature columns (a column the log lacks is all missing); ``target`` names the label
    column. Rows without a label are kept, their label missing, only with ``include_unlabelled``.
    """
    import pandas as pd

    key = [REQUEST_ID, ROW]
    ordered = predictions.sort_values(TS, kind="stable")  # the first time a row was logged comes first
    served = ordered.drop_duplicates(key, keep="first")
    if len(feedback):
        labels = feedback.sort_values(TS, kind="stable")[[*key, LABEL]].drop_duplicates(key, keep="first")
    else:
        labels = pd.DataFrame({REQUEST_ID: pd.Series(dtype=object), ROW: pd.Series(dtype="int32"),
                               LABEL: pd.Series(dtype=object)})
    matched = served.merge(labels, on=key, how="inner", validate="one_to_one")
    labelled = len(matched)
    kept = served.merge(labels, on=key, how="left", validate="one_to_one") if include_unlabelled else matched
    kept = kept.sort_values([TS, REQUEST_ID, ROW], kind="stable").reset_index(drop=True)

    columns = {name: kept[name] if name in kept.columns else pd.Series(float("nan"), index=kept.index)
               for name in features}
    columns[target] = _label_column(kept[LABEL], labels[LABEL].dtype)
    columns[SERVED_VERSION] = kept[VERSION].astype(str)
    columns[REQUEST_ID] = kept[REQUEST_ID].astype(str)
    columns[SERVED_AT] = pd.to_datetime(kept[TS], utc=True)
    frame = pd.DataFrame(columns)
    return LabelledRows(
        frame=frame, target=target, predicted=len(served), labelled=labelled,
        repeated_predictions=len(predictions) - len(served),
        repeated_labels=len(feedback) - len(labels) if len(feedback) else 0,
        unmatched_labels=len(labels) - labelled,
        versions=sorted(frame[SERVED_VERSION].unique().tolist(), key=version_order))


def _label_column(labels: Any, logged: Any) -> Any:
    """The labels in the type they were logged in (``logged``); with some missing, whole numbers and booleans
    stay what they are (a nullable column) instead of turning into floats."""
    import pandas as pd

    if labels.isna().any():
        if pd.api.types.is_bool_dtype(logged):
            return labels.astype("boolean")
        if pd.api.types.is_integer_dtype(logged):
            return labels.astype("Int64")
        return labels
    return labels.astype(logged) if len(labels) else labels


def version_order(version: str) -> tuple[int, str]:
    """A sort key for version names: numbers in numeric order, then any other names."""
    return (int(version), "") if version.isdigit() else (1 << 62, version)
