"""Turn request bodies into a feature matrix and predictions into response bodies, validating everything.

Two request families:

- Open Inference (KServe V2): ``{"inputs": [{"name", "shape", "datatype", "data"}, ...]}``, either one
  2-D tensor ``[rows, n_features]`` in feature order, or one 1-D tensor per feature named after it;
  the binary tensor data extension (``Inference-Header-Content-Length``) is supported both ways.
- Plain JSON: ``{"instances": [{feature: value}, ...]}``, ``{"inputs": {feature: [values]}}`` or
  pandas' split form ``{"columns": [...], "data": [[...], ...]}``.

Every mistake raises ``RequestError`` carrying the HTTP status and the field at fault.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from mloop.bundle.loaded import LoadedModel

V2_DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype("bool"), "UINT8": np.dtype("<u1"), "UINT16": np.dtype("<u2"), "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"), "INT8": np.dtype("<i1"), "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"), "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
}
_NUMPY_TO_V2 = {dtype: name for name, dtype in V2_DTYPES.items()}


class RequestError(Exception):
    """A client mistake: ``status`` is the HTTP code, ``field`` names what was wrong."""

    def __init__(self, message: str, *, field: str = "", status: int = 422,
                 headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.status = status
        self.headers = headers or []

    def body(self) -> bytes:
        payload: dict[str, Any] = {"error": self.message}
        if self.field:
            payload["field"] = self.field
        return orjson.dumps(payload)


def parse_json(raw: bytes) -> Any:
    if not raw:
        raise RequestError("the request body is empty; send a JSON object", status=400)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise RequestError(f"the body is not valid JSON: {err}", status=400) from err


# ---------------------------------------------------------------------------------------------- V2


class V2Request:
    """A parsed V2 inference request: the feature matrix, the request id and the outputs asked for."""

    def __init__(self, rows: np.ndarray, request_id: str, outputs: list[str] | None, binary: set[str]) -> None:
        self.rows = rows
        self.request_id = request_id
        self.outputs = outputs
        self.binary = binary


def parse_v2(body: bytes, model: LoadedModel, header_length: int | None = None) -> V2Request:
    if header_length is not None:
        if header_length < 0 or header_length > len(body):
            raise RequestError(f"Inference-Header-Content-Length {header_length} is outside the body "
                               f"({len(body)} bytes)", field="Inference-Header-Content-Length", status=400)
        request, tail = parse_json(body[:header_length]), memoryview(body)[header_length:]
    else:
        request, tail = parse_json(body), memoryview(b"")
    if not isinstance(request, dict):
        raise RequestError("an inference request is a JSON object with an 'inputs' list", status=400)
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise RequestError("'inputs' must be a non-empty list of tensors", field="inputs")
    tensors: dict[str, np.ndarray] = {}
    offset = 0
    for index, tensor in enumerate(inputs):
        name, array, used = _tensor(tensor, index, tail[offset:])
        offset += used
        if name in tensors:
            raise RequestError(f"input {name!r} is given twice", field=f"inputs[{index}].name")
        tensors[name] = array
    if offset != len(tail):
        raise RequestError(f"{len(tail) - offset} bytes of binary data are not claimed by any input",
                           field="inputs", status=400)
    rows = _v2_rows(tensors, model)
    request_id = request.get("id", "")
    outputs, binary = _requested_outputs(request, model)
    return V2Request(rows, request_id if isinstance(request_id, str) else str(request_id), outputs, binary)


def _tensor(tensor: Any, index: int, tail: memoryview) -> tuple[str, np.ndarray, int]:
    where = f"inputs[{index}]"
    if not isinstance(tensor, dict):
        raise RequestError(f"{where} must be an object with name, shape, datatype and data", field=where)
    name, shape, datatype = tensor.get("name"), tensor.get("shape"), tensor.get("datatype")
    if not isinstance(name, str) or not name:
        raise RequestError(f"{where}.name must be a non-empty string", field=f"{where}.name")
    where = f"input {name!r}"
    if (not isinstance(shape, list) or not shape
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
        raise RequestError(f"{where}: shape must be a list of non-negative integers, got {shape!r}",
                           field=f"{name}.shape")
    if len(shape) > 2:
        raise RequestError(f"{where}: shape {shape} has {len(shape)} dimensions; expected [rows] or [rows, columns]",
                           field=f"{name}.shape")
    dtype = V2_DTYPES.get(datatype) if isinstance(datatype, str) else None
    if dtype is None:
        raise RequestError(f"{where}: datatype {datatype!r} is not numeric; use one of {', '.join(V2_DTYPES)}",
                           field=f"{name}.datatype")
    count = math.prod(shape)
    params = tensor.get("parameters") or {}
    size = params.get("binary_data_size") if isinstance(params, dict) else None
    if size is not None:
        if not isinstance(size, int) or size != count * dtype.itemsize or size > len(tail):
            raise RequestError(f"{where}: binary_data_size {size!r} does not match shape {shape} of {datatype} "
                               f"({count * dtype.itemsize} bytes) or the bytes sent", field=f"{name}.parameters")
        return name, np.frombuffer(tail[:size], dtype=dtype).reshape(shape), size
    data = tensor.get("data")
    if not isinstance(data, list):
        raise RequestError(f"{where}: data must be a list of numbers", field=f"{name}.data")
    try:
        array = np.asarray(data, dtype=np.float64 if dtype.kind == "f" else dtype)
    except (ValueError, TypeError, OverflowError) as err:
        raise RequestError(f"{where}: data must hold only numbers of type {datatype}", field=f"{name}.data") from err
    if array.size != count:
        raise RequestError(f"{where}: shape {shape} needs {count} values, got {array.size}", field=f"{name}.data")
    return name, array.reshape(shape), 0


def _v2_rows(tensors: dict[str, np.ndarray], model: LoadedModel) -> np.ndarray:
    names = [f.name for f in model.features]
    if len(tensors) == 1:
        (name, array), = tensors.items()
        if name not in names:
            if array.ndim != 2 or array.shape[1] != len(names):
                raise RequestError(
                    f"input {name!r}: shape {list(array.shape)} does not fit the model, which takes "
                    f"[rows, {len(names)}] (features in order: {', '.join(names[:3])}, ...) or one tensor per feature",
                    field=f"{name}.shape")
            return check_values(array.astype(np.float64, copy=False), model)
    unknown = [n for n in tensors if n not in names]
    if unknown:
        raise RequestError(f"input {unknown[0]!r} is not a feature of the model", field=unknown[0])
    missing = [n for n in names if n not in tensors]
    if missing:
        raise RequestError(f"feature {missing[0]!r} is missing" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
                           field=missing[0])
    lengths = {n: a.shape[0] for n, a in tensors.items()}
    for n, a in tensors.items():
        if a.ndim == 2 and a.shape[1] != 1:
            raise RequestError(f"input {n!r}: a per-feature tensor has shape [rows] or [rows, 1], got {list(a.shape)}",
                               field=f"{n}.shape")
    if len(set(lengths.values())) != 1:
        raise RequestError(f"per-feature inputs have different row counts: {lengths}", field="inputs")
    rows = np.column_stack([tensors[n].reshape(-1).astype(np.float64, copy=False) for n in names])
    return check_values(rows, model)


def _requested_outputs(request: dict[str, Any], model: LoadedModel) -> tuple[list[str] | None, set[str]]:
    available = output_names(model)
    params = request.get("parameters") or {}
    binary_all = isinstance(params, dict) and params.get("binary_data_output") is True
    asked = request.get("outputs")
    if asked is None:
        return None, set(available) if binary_all else set()
    if not isinstance(asked, list):
        raise RequestError("'outputs' must be a list of {name: ...} objects", field="outputs")
    names: list[str] = []
    binary: set[str] = set()
    for index, out in enumerate(asked):
        name = out.get("name") if isinstance(out, dict) else None
        if name not in available:
            raise RequestError(f"output {name!r} does not exist; the model has {available}", field=f"outputs[{index}]")
        names.append(name)
        out_params = out.get("parameters") or {}
        if binary_all or (isinstance(out_params, dict) and out_params.get("binary_data") is True):
            binary.add(name)
    return names, binary


def output_names(model: LoadedModel) -> list[str]:
    return ["label", "probabilities"] if model.classes else ["prediction"]


def v2_response(model: LoadedModel, request: V2Request, labels: np.ndarray,
                proba: np.ndarray | None) -> tuple[bytes, int | None]:
    """The response body and, when some outputs are binary, the JSON header's length."""
    produced: dict[str, np.ndarray] = {}
    if model.classes:
        produced["label"] = labels
        if proba is not None:
            produced["probabilities"] = proba
    else:
        produced["prediction"] = labels
    wanted = request.outputs or list(produced)
    outputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name in wanted:
        array = produced[name]
        if array.dtype.kind not in "biuf":
            array = array.astype(np.float64)
        array = array.astype(array.dtype.newbyteorder("<"), copy=False)
        datatype = _NUMPY_TO_V2.get(array.dtype, "FP64")
        entry: dict[str, Any] = {"name": name, "shape": list(array.shape), "datatype": datatype}
        if name in request.binary:
            blob = np.ascontiguousarray(array).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = array.reshape(-1)
        outputs.append(entry)
    header = orjson.dumps({"model_name": model.name, "model_version": model.version, "id": request.request_id,
                           "outputs": outputs}, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)


def model_metadata(model: LoadedModel) -> dict[str, Any]:
    inputs = [{"name": f.name, "datatype": "FP64", "shape": [-1]} for f in model.features]
    if model.classes:
        outputs = [{"name": "label", "datatype": "INT64", "shape": [-1]},
                   {"name": "probabilities", "datatype": "FP64", "shape": [-1, len(model.classes)]}]
    else:
        outputs = [{"name": "prediction", "datatype": "FP64", "shape": [-1]}]
    return {"name": model.name, "versions": [model.version], "platform": "mloop-sklearn",
            "inputs": inputs, "outputs": outputs,
            "parameters": {"features_as_one_tensor": {"name": "input-0", "datatype": "FP64",
                                                      "shape": [-1, len(model.features)]}}}


# ----------------------------------------------------------------------------------------- plain JSON


def parse_plain(body: bytes, model: LoadedModel) -> np.ndarray:
    payload = parse_json(body)
    if not isinstance(payload, dict):
        raise RequestError('send {"instances": [{feature: value, ...}]}, {"inputs": {feature: [values]}} '
                           'or {"columns": [...], "data": [[...]]}', status=400)
    names = [f.name for f in model.features]
    keys = set(payload)
    if keys == {"instances"}:
        return check_values(_from_instances(payload["instances"], names), model)
    if keys == {"inputs"} and isinstance(payload["inputs"], dict):
        return check_values(_from_columns(payload["inputs"], names), model)
    if keys == {"columns", "data"}:
        return check_values(_from_split(payload["columns"], payload["data"], names), model)
    forms = [k for k in ("instances", "inputs", "columns") if k in keys]
    if len(forms) > 1 or (forms and keys - _FORM_KEYS[forms[0]]):
        extra = sorted(keys - _FORM_KEYS[forms[0]]) if len(forms) == 1 else forms
        raise RequestError(f"use one form per request; unexpected {', '.join(repr(k) for k in extra)} beside "
                           f"{forms[0]!r}", field=str(extra[0]))
    raise RequestError("the body needs 'instances', 'inputs' (a column object) or 'columns' and 'data'",
                       field="instances")


_FORM_KEYS = {"instances": {"instances"}, "inputs": {"inputs"}, "columns": {"columns", "data"}}


def _from_instances(instances: Any, names: list[str]) -> np.ndarray:
    if not isinstance(instances, list) or not instances:
        raise RequestError("'instances' must be a non-empty list of {feature: value} objects", field="instances")
    expected = set(names)
    table: list[list[Any]] = []
    for index, row in enumerate(instances):
        if not isinstance(row, dict):
            raise RequestError(f"instances[{index}] must be an object of feature: value", field=f"instances[{index}]")
        if row.keys() != expected:
            _key_error(row.keys(), names, f"instances[{index}]")
        table.append([row[n] for n in names])
    return _numbers(table, "instances")


def _from_columns(columns: dict[str, Any], names: list[str]) -> np.ndarray:
    if columns.keys() != set(names):
        _key_error(columns.keys(), names, "inputs")
    lengths = {len(v) if isinstance(v, list) else -1 for v in columns.values()}
    if len(lengths) != 1 or -1 in lengths or 0 in lengths:
        raise RequestError("each feature in 'inputs' needs a non-empty list of values, all of the same length",
                           field="inputs")
    return _numbers([columns[n] for n in names], "inputs").T


def _from_split(columns: Any, data: Any, names: list[str]) -> np.ndarray:
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise RequestError("'columns' must be a list of feature names", field="columns")
    if len(set(columns)) != len(columns):
        raise RequestError("'columns' names a feature twice", field="columns")
    if set(columns) != set(names):
        _key_error(columns, names, "columns")
    if not isinstance(data, list) or not data:
        raise RequestError("'data' must be a non-empty list of rows", field="data")
    table = _numbers(data, "data")
    if table.ndim != 2 or table.shape[1] != len(columns):
        raise RequestError(f"every row of 'data' needs {len(columns)} values", field="data")
    order = [columns.index(n) for n in names]
    return table[:, order]


def _key_error(keys: Any, names: list[str], where: str) -> None:
    missing = [n for n in names if n not in keys]
    extra = [k for k in keys if k not in set(names)]
    if missing:
        raise RequestError(f"{where}: feature {missing[0]!r} is missing"
                           + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""), field=missing[0])
    raise RequestError(f"{where}: {extra[0]!r} is not a feature of the model", field=str(extra[0]))


def _numbers(table: Sequence[Any], where: str) -> np.ndarray:
    try:
        array = np.asarray(table, dtype=np.float64)
    except (ValueError, TypeError, OverflowError) as err:
        raise RequestError(f"'{where}' must hold only numbers (null for a missing value where allowed)",
                           field=where) from err
    if array.ndim != 2:
        raise RequestError(f"'{where}' must be a table of numbers", field=where)
    return array


def check_values(rows: np.ndarray, model: LoadedModel, *, first_row: int = 0) -> np.ndarray:
    """Refuse NaN or infinity, except NaN where the model copes with it; rows are counted from ``first_row``."""
    if rows.shape[0] == 0:
        raise RequestError("the request has no rows", field="inputs")
    finite = np.isfinite(rows)
    if not finite.all():
        bad_rows, bad_cols = np.nonzero(~finite)
        for row, col in zip(bad_rows.tolist(), bad_cols.tolist(), strict=True):
            feature = model.features[col]
            value = rows[row, col]
            if math.isnan(value) and feature.allow_missing:
                continue
            what = "missing (NaN or null)" if math.isnan(value) else "infinite"
            raise RequestError(f"feature {feature.name!r} in row {row + first_row} is {what}; the model was trained without "
                               "missing values there", field=feature.name)
    return rows


def plain_response(model: LoadedModel, labels: np.ndarray, proba: np.ndarray | None) -> bytes:
    """``{"label", "probabilities"}`` per row for a classifier, ``{"prediction"}`` for a regressor."""
    classes = [str(c) for c in model.classes]
    predictions: list[dict[str, Any]]
    label_list = labels.tolist()
    if not classes:
        predictions = [{"prediction": value} for value in label_list]
    elif proba is not None:
        predictions = [{"label": label, "probabilities": dict(zip(classes, p, strict=True))}
                       for label, p in zip(label_list, proba.tolist(), strict=True)]
    else:
        predictions = [{"label": label} for label in label_list]
    return orjson.dumps({"model": model.name, "version": model.version, "predictions": predictions})
