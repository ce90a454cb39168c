"""Turn request bodies into feature rows and predictions into response bodies, validating everything.

Two request families:

- Open Inference (KServe V2): ``{"inputs": [{"name", "shape", "datatype", "data"}, ...]}``, either one
  2-D tensor ``[rows, n_features]`` in feature order (numeric features only), or one 1-D tensor per
  feature named after it (``BYTES`` for a categorical feature, ``BOOL`` or a number for a boolean one);
  the binary tensor data extension (``Inference-Header-Content-Length``) is supported both ways.
- Plain JSON: ``{"instances": [{feature: value}, ...]}``, ``{"inputs": {feature: [values]}}`` or
  pandas' split form ``{"columns": [...], "data": [[...], ...]}``.

Each feature takes values of its training type: a number for a float or integer feature (an integer
one takes whole numbers), ``true``/``false`` (or 0/1) for a boolean one, a string for a categorical
one, and ``null`` only where the model takes missing values. A request of numbers only for a model of
numeric features goes straight into a float matrix (the fast path); anything else is checked value by
value. Every mistake raises ``RequestError`` carrying the HTTP status and the field at fault.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from mloop.bundle.loaded import Feature, LoadedModel, Rows

V2_DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype("bool"), "UINT8": np.dtype("<u1"), "UINT16": np.dtype("<u2"), "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"), "INT8": np.dtype("<i1"), "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"), "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
}
V2_DATATYPES = [*V2_DTYPES, "BYTES"]
_NUMPY_TO_V2 = {dtype: name for name, dtype in V2_DTYPES.items()}
_V2_TYPE_OF = {"float": "FP64", "integer": "INT64", "boolean": "BOOL", "categorical": "BYTES"}
_EXPECTED = {"float": "a number", "integer": "a whole number", "boolean": "true or false",
             "categorical": "a string (a category)"}


class RequestError(Exception):
    """A client mistake: ``status`` is the HTTP code, ``field`` names what was wrong."""

    def __init__(self, message: str, *, field: str = "", status: int = 422,
                 headers: list[tuple[bytes, bytes]] | None = None, row: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.status = status
        self.headers = headers or []
        self.row = row  # the row at fault (counted from 0), when one value is: not sent, it is in the message

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


def _fast(model: LoadedModel) -> bool:
    """Whether requests of numbers only go straight into the float matrix (no boolean or categorical feature)."""
    return model.numbers_only


def _has_json_boolean(body: bytes) -> bool:
    """Whether the body has a JSON ``true`` or ``false`` (numpy would read them as 1 and 0 among numbers).

    Found by jumping from one ``t`` (``f``) to the next with ``bytes.find`` (memchr): in a body of numbers
    those letters occur only in its few keys, so this costs a few calls, where ``b"true" in body`` scans
    every byte (about 25 us for a 60 kB body)."""
    for word in (b"true", b"false"):
        first = word[:1]
        at = body.find(first)
        while at != -1:
            if body.startswith(word, at):
                return True
            at = body.find(first, at + 1)
    return False


# ------------------------------------------------------------------------------------------ values


def _column(feature: Feature, values: Sequence[Any], *, first_row: int = 0) -> tuple[np.ndarray, list[Any] | None]:
    """One feature's values checked against its type: the float column and, for a categorical feature, its text."""
    n = len(values)
    column = np.empty(n, dtype=np.float64)
    text: list[Any] | None = [None] * n if feature.type == "categorical" else None
    for row, value in enumerate(values):
        if value is None:
            if not feature.allow_missing:
                raise RequestError(f"feature {feature.name!r} in row {row + first_row} is missing (null); the model "
                                   "was trained without missing values there", field=feature.name,
                                   row=row + first_row)
            column[row] = np.nan
            continue
        kind = type(value)
        if feature.type == "categorical":
            if kind is not str:
                raise RequestError(f"feature {feature.name!r} in row {row + first_row} expects a string (a category "
                                   f"such as {feature.categories[0]!r}), got {_json(value)}" if feature.categories else
                                   f"feature {feature.name!r} in row {row + first_row} expects a string, got {_json(value)}",
                                   field=feature.name, row=row + first_row)
            assert text is not None
            text[row] = value
            column[row] = 0.0  # the category index is filled in by the caller (it needs every value)
        elif feature.type == "boolean":
            if kind is bool or (kind is int and value in (0, 1)):
                column[row] = float(value)
            else:
                raise RequestError(f"feature {feature.name!r} in row {row + first_row} expects true or false, "
                                   f"got {_json(value)}", field=feature.name, row=row + first_row)
        else:
            if kind is bool or kind not in (int, float):
                raise RequestError(f"feature {feature.name!r} in row {row + first_row} expects "
                                   f"{_EXPECTED[feature.type]}, got {_json(value)}", field=feature.name,
                                   row=row + first_row)
            if feature.type == "integer" and kind is float and not float(value).is_integer():
                raise RequestError(f"feature {feature.name!r} in row {row + first_row} expects a whole number, "
                                   f"got {_json(value)}", field=feature.name, row=row + first_row)
            column[row] = value
    return column, text


def _json(value: Any) -> str:
    """A value as the client wrote it (JSON: true, "1.5"), shortened."""
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def rows_from_columns(model: LoadedModel, columns: Sequence[Sequence[Any]], *, first_row: int = 0) -> Rows:
    """Rows from one list of raw values per feature (in feature order), each checked against its type."""
    n = len(columns[0]) if columns else 0
    values = np.empty((n, len(model.features)), dtype=np.float64)
    text = np.empty((n, len(model.categorical)), dtype=object) if model.categorical else None
    for index, feature in enumerate(model.features):
        column, strings = _column(feature, columns[index], first_row=first_row)
        if strings is not None:
            assert text is not None
            position = model.categorical.index(index)
            text[:, position] = strings
            column = model.encode(position, strings)
        values[:, index] = column
    return check_values(Rows(values, text), model, first_row=first_row)


def check_values(rows: Rows, model: LoadedModel, *, first_row: int = 0) -> Rows:
    """Refuse NaN or infinity, except NaN where the model copes with it; rows are counted from ``first_row``."""
    if len(rows) == 0:
        raise RequestError("the request has no rows", field="inputs")
    finite = np.isfinite(rows.values)
    if not finite.all():
        bad_rows, bad_cols = np.nonzero(~finite)
        for row, col in zip(bad_rows.tolist(), bad_cols.tolist(), strict=True):
            feature = model.features[col]
            value = rows.values[row, col]
            if math.isnan(value) and feature.allow_missing:
                continue
            if value == -1.0 and feature.type == "categorical":
                continue  # a category training never saw: the model decides what it makes of it
            what = "missing (NaN or null)" if math.isnan(value) else "infinite"
            raise RequestError(f"feature {feature.name!r} in row {row + first_row} is {what}; the model was trained "
                               "without missing values there", field=feature.name, row=row + first_row)
    if model.whole_columns:  # integer and boolean features take whole numbers (booleans 0 or 1) only
        column_values = rows.values[:, model.whole_columns]
        with np.errstate(invalid="ignore"):
            bad = np.isfinite(column_values) & ((column_values != np.round(column_values)) | (
                model.boolean_mask & ((column_values < 0) | (column_values > 1))))
        if bad.any():
            row, col = (int(i) for i in np.argwhere(bad)[0])
            feature = model.features[model.whole_columns[col]]
            raise RequestError(f"feature {feature.name!r} in row {row + first_row} expects "
                               f"{_EXPECTED[feature.type]}, got {rows.values[row, model.whole_columns[col]]!r}",
                               field=feature.name, row=row + first_row)
    return rows


def _numbers(table: Any, model: LoadedModel, body: bytes | None) -> np.ndarray | None:
    """The fast path: a table of numbers only, for a model of float and integer features; None if it is not one
    (the caller then checks value by value, and says what is wrong)."""
    if not _fast(model) or (body is not None and _has_json_boolean(body)):
        return None
    try:
        array = np.asarray(table)
    except (ValueError, TypeError):
        return None
    if array.dtype.kind not in "iuf" or array.ndim != 2:
        return None
    return array.astype(np.float64, copy=False)


# ---------------------------------------------------------------------------------------------- V2


class V2Request:
    """A parsed V2 inference request: the feature rows, the request id and the outputs asked for."""

    def __init__(self, rows: Rows, request_id: str, outputs: list[str] | None, binary: set[str]) -> None:
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
    tensors: dict[str, tuple[str, Any, list[int]]] = {}
    offset = 0
    # Number tensors are read by numpy at once, unless a JSON boolean is somewhere (numpy would take true
    # as 1) or the model has boolean or categorical features: then each value is checked against its type.
    bools = not _fast(model) or _has_json_boolean(body)
    for index, tensor in enumerate(inputs):
        name, datatype, data, shape, used = _tensor(tensor, index, tail[offset:], bools)
        offset += used
        if name in tensors:
            raise RequestError(f"input {name!r} is given twice", field=f"inputs[{index}].name")
        tensors[name] = (datatype, data, shape)
    if offset != len(tail):
        raise RequestError(f"{len(tail) - offset} bytes of binary data are not claimed by any input",
                           field="inputs", status=400)
    rows = _v2_rows(tensors, model, bools=bools)
    request_id = request.get("id", "")
    outputs, binary = _requested_outputs(request, model)
    return V2Request(rows, request_id if isinstance(request_id, str) else str(request_id), outputs, binary)


def _tensor(tensor: Any, index: int, tail: memoryview, bools: bool) -> tuple[str, str, Any, list[int], int]:
    """``(name, datatype, data, shape, binary bytes used)``: data is a numpy array of numbers (the fast path),
    or a flat list of the values as sent (strings, booleans, or numbers to be checked one by one)."""
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
    if datatype not in V2_DATATYPES:
        raise RequestError(f"{where}: datatype {datatype!r} is not one of {', '.join(V2_DATATYPES)}",
                           field=f"{name}.datatype")
    count = math.prod(shape)
    params = tensor.get("parameters") or {}
    size = params.get("binary_data_size") if isinstance(params, dict) else None
    if datatype == "BYTES":
        if size is not None:
            if not isinstance(size, int) or size > len(tail):
                raise RequestError(f"{where}: binary_data_size {size!r} is more than the bytes sent",
                                   field=f"{name}.parameters")
            return name, datatype, _bytes_elements(tail[:size], count, name), shape, size
        data = tensor.get("data")
        if not isinstance(data, list):
            raise RequestError(f"{where}: data must be a list of strings", field=f"{name}.data")
        flat = _flatten(data)
        if len(flat) != count:
            raise RequestError(f"{where}: shape {shape} needs {count} values, got {len(flat)}", field=f"{name}.data")
        return name, datatype, flat, shape, 0
    dtype = V2_DTYPES[datatype]
    if size is not None:
        if not isinstance(size, int) or size != count * dtype.itemsize or size > len(tail):
            raise RequestError(f"{where}: binary_data_size {size!r} does not match shape {shape} of {datatype} "
                               f"({count * dtype.itemsize} bytes) or the bytes sent", field=f"{name}.parameters")
        return name, datatype, np.frombuffer(tail[:size], dtype=dtype).reshape(shape), shape, size
    data = tensor.get("data")
    if not isinstance(data, list):
        raise RequestError(f"{where}: data must be a list of numbers", field=f"{name}.data")
    if not bools and datatype != "BOOL":  # numbers only, as numpy reads them at once (nested or flat)
        try:
            array = np.asarray(data)
        except (ValueError, TypeError, OverflowError):
            array = None  # ragged, or not numbers: checked value by value below, which says what is wrong
        if array is not None and array.dtype.kind in "iuf" and array.size == count:
            return name, datatype, array.reshape(shape), shape, 0
    flat = _flatten(data)
    if len(flat) != count:
        raise RequestError(f"{where}: shape {shape} needs {count} values, got {len(flat)}", field=f"{name}.data")
    return name, datatype, flat, shape, 0


def _flatten(data: list[Any]) -> list[Any]:
    if data and isinstance(data[0], list):
        return [v for row in data for v in (_flatten(row) if isinstance(row, list) else [row])]
    return data


def _bytes_elements(blob: memoryview, count: int, name: str) -> list[Any]:
    """The elements of a binary BYTES tensor: each a 4-byte little-endian length, then that many bytes (UTF-8)."""
    found: list[Any] = []
    offset = 0
    while offset < len(blob):
        if offset + 4 > len(blob):
            raise RequestError(f"input {name!r}: a BYTES element's length is cut short", field=f"{name}.parameters")
        (length,) = struct.unpack_from("<I", blob, offset)
        offset += 4
        if offset + length > len(blob):
            raise RequestError(f"input {name!r}: a BYTES element is cut short", field=f"{name}.parameters")
        try:
            found.append(bytes(blob[offset:offset + length]).decode("utf-8"))
        except UnicodeDecodeError as err:
            raise RequestError(f"input {name!r}: a BYTES element is not UTF-8", field=f"{name}.data") from err
        offset += length
    if len(found) != count:
        raise RequestError(f"input {name!r}: the shape needs {count} values, the bytes hold {len(found)}",
                           field=f"{name}.data")
    return found


def _v2_values(name: str, datatype: str, data: Any, feature: Feature | None, bools: bool) -> list[Any]:
    """A tensor's values as Python values to check against the feature's type (``bools``: the body has a JSON
    boolean somewhere, so a number tensor is checked value by value)."""
    if feature is not None and (datatype == "BYTES") != (feature.type == "categorical"):
        expected = _V2_TYPE_OF[feature.type]
        raise RequestError(f"input {name!r}: feature {name!r} is {feature.type}; send it as {expected}"
                           + (" (strings)" if expected == "BYTES" else "") + f", not {datatype}",
                           field=f"{name}.datatype")
    if isinstance(data, np.ndarray):  # numbers (JSON, read by numpy at once) or binary data, typed already
        return data.reshape(-1).tolist()
    if datatype in ("BOOL", "BYTES"):
        return data  # type: ignore[no-any-return]
    for value in data:  # a number tensor: a JSON string or boolean in it is refused, not converted
        if value is not None and (type(value) is bool or type(value) not in (int, float)):
            raise RequestError(f"input {name!r}: data must hold only numbers of type {datatype}, got {_json(value)}",
                               field=f"{name}.data")
    return data  # type: ignore[no-any-return]


def _v2_rows(tensors: dict[str, tuple[str, Any, list[int]]], model: LoadedModel, *, bools: bool) -> Rows:
    names = model.feature_names
    if len(tensors) == 1:
        ((name, (datatype, data, shape)),) = tensors.items()
        if name not in names:
            if len(shape) != 2 or shape[1] != len(names):
                raise RequestError(
                    f"input {name!r}: shape {shape} does not fit the model, which takes "
                    f"[rows, {len(names)}] (features in order: {', '.join(names[:3])}, ...) or one tensor per feature",
                    field=f"{name}.shape")
            if model.categorical:
                raise RequestError(f"input {name!r}: the model has categorical features "
                                   f"({', '.join(model.feature_names[i] for i in model.categorical)}); send one "
                                   "tensor per feature (BYTES for those)", field=f"{name}.shape")
            if datatype == "BYTES":
                raise RequestError(f"input {name!r}: datatype BYTES is not numeric; features in one tensor are "
                                   "numbers", field=f"{name}.datatype")
            if _fast(model) and isinstance(data, np.ndarray):
                return check_values(Rows(data.reshape(shape).astype(np.float64, copy=False)), model)
            values = _v2_values(name, datatype, data, None, bools)
            if _fast(model):
                return check_values(Rows(np.asarray(values, dtype=np.float64).reshape(shape)), model)
            table = [values[r * shape[1]:(r + 1) * shape[1]] for r in range(shape[0])]
            return rows_from_columns(model, [list(c) for c in zip(*table, strict=True)] if table else [[] for _ in names])
    unknown = [n for n in tensors if n not in names]
    if unknown:
        raise RequestError(f"input {unknown[0]!r} is not a feature of the model", field=unknown[0])
    missing = [n for n in names if n not in tensors]
    if missing:
        raise RequestError(f"feature {missing[0]!r} is missing" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
                           field=missing[0])
    for n, (_, _, shape) in tensors.items():
        if len(shape) == 2 and shape[1] != 1:
            raise RequestError(f"input {n!r}: a per-feature tensor has shape [rows] or [rows, 1], got {shape}",
                               field=f"{n}.shape")
    lengths = {n: shape[0] for n, (_, _, shape) in tensors.items()}
    if len(set(lengths.values())) != 1:
        raise RequestError(f"per-feature inputs have different row counts: {lengths}", field="inputs")
    if _fast(model) and all(isinstance(tensors[n][1], np.ndarray) and tensors[n][0] != "BYTES" for n in names):
        return check_values(Rows(np.column_stack([tensors[n][1].reshape(-1).astype(np.float64, copy=False)
                                                  for n in names])), model)
    columns = [_v2_values(f.name, tensors[f.name][0], tensors[f.name][1], f, bools) for f in model.features]
    if _fast(model) and not bools:
        return check_values(Rows(np.asarray(columns, dtype=np.float64).T.copy()), model)
    return rows_from_columns(model, columns)


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


def _bytes_blob(values: list[Any]) -> bytes:
    parts = []
    for value in values:
        raw = str(value).encode("utf-8")
        parts.append(struct.pack("<I", len(raw)) + raw)
    return b"".join(parts)


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
        entry: dict[str, Any]
        if array.dtype.kind in "OUS":  # string labels (classes named by strings): BYTES
            values = array.reshape(-1).tolist()
            entry = {"name": name, "shape": list(array.shape), "datatype": "BYTES"}
            if name in request.binary:
                blob = _bytes_blob(values)
                entry["parameters"] = {"binary_data_size": len(blob)}
                blobs.append(blob)
            else:
                entry["data"] = [str(v) for v in values]
            outputs.append(entry)
            continue
        if array.dtype.kind not in "biuf":
            array = array.astype(np.float64)
        array = array.astype(array.dtype.newbyteorder("<"), copy=False)
        datatype = _NUMPY_TO_V2.get(array.dtype, "FP64")
        entry = {"name": name, "shape": list(array.shape), "datatype": datatype}
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
    """V2 metadata: each input's datatype, whether it takes null and its categories; the classes behind the
    probability columns."""
    inputs = []
    for f in model.features:
        entry: dict[str, Any] = {"name": f.name, "datatype": _V2_TYPE_OF[f.type], "shape": [-1],
                                 "parameters": {"nullable": f.allow_missing}}
        if f.type == "categorical":
            entry["parameters"]["categories"] = list(f.categories)
        inputs.append(entry)
    if model.classes:
        label_type = "BYTES" if any(isinstance(c, str) for c in model.classes) else (
            "BOOL" if all(isinstance(c, bool) for c in model.classes) else "INT64")
        outputs = [{"name": "label", "datatype": label_type, "shape": [-1]},
                   {"name": "probabilities", "datatype": "FP64", "shape": [-1, len(model.classes)],
                    "parameters": {"classes": [str(c) for c in model.classes]}}]
    else:
        outputs = [{"name": "prediction", "datatype": "FP64", "shape": [-1]}]
    parameters: dict[str, Any] = {"task": model.task}
    if not model.categorical:
        parameters["features_as_one_tensor"] = {"name": "input-0", "datatype": "FP64",
                                                "shape": [-1, len(model.features)]}
    return {"name": model.name, "versions": [model.version], "platform": "mloop-sklearn",
            "inputs": inputs, "outputs": outputs, "parameters": parameters}


# ----------------------------------------------------------------------------------------- plain JSON


def parse_plain(body: bytes, model: LoadedModel) -> Rows:
    payload = parse_json(body)
    if not isinstance(payload, dict):
        raise RequestError('send {"instances": [{feature: value, ...}]}, {"inputs": {feature: [values]}} '
                           'or {"columns": [...], "data": [[...]]}', status=400)
    names = model.feature_names
    keys = set(payload)
    if keys == {"instances"}:
        return _from_instances(payload["instances"], model, body)
    if keys == {"inputs"} and isinstance(payload["inputs"], dict):
        return _from_columns(payload["inputs"], model, body)
    if keys == {"columns", "data"}:
        return _from_split(payload["columns"], payload["data"], model, body)
    forms = [k for k in ("instances", "inputs", "columns") if k in keys]
    if len(forms) > 1 or (forms and keys - _FORM_KEYS[forms[0]]):
        extra = sorted(keys - _FORM_KEYS[forms[0]]) if len(forms) == 1 else forms
        raise RequestError(f"use one form per request; unexpected {', '.join(repr(k) for k in extra)} beside "
                           f"{forms[0]!r}", field=str(extra[0]))
    del names
    raise RequestError("the body needs 'instances', 'inputs' (a column object) or 'columns' and 'data'",
                       field="instances")


_FORM_KEYS = {"instances": {"instances"}, "inputs": {"inputs"}, "columns": {"columns", "data"}}


def _from_instances(instances: Any, model: LoadedModel, body: bytes) -> Rows:
    names = model.feature_names
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
    numbers = _numbers(table, model, body)
    if numbers is not None:
        return check_values(Rows(numbers), model)
    return rows_from_columns(model, [list(column) for column in zip(*table, strict=True)])


def _from_columns(columns: dict[str, Any], model: LoadedModel, body: bytes) -> Rows:
    names = model.feature_names
    if columns.keys() != set(names):
        _key_error(columns.keys(), names, "inputs")
    lengths = {len(v) if isinstance(v, list) else -1 for v in columns.values()}
    if len(lengths) != 1 or -1 in lengths or 0 in lengths:
        raise RequestError("each feature in 'inputs' needs a non-empty list of values, all of the same length",
                           field="inputs")
    numbers = _numbers([columns[n] for n in names], model, body)
    if numbers is not None:
        return check_values(Rows(np.ascontiguousarray(numbers.T)), model)
    return rows_from_columns(model, [columns[n] for n in names])


def _from_split(columns: Any, data: Any, model: LoadedModel, body: bytes) -> Rows:
    names = model.feature_names
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise RequestError("'columns' must be a list of feature names", field="columns")
    if len(set(columns)) != len(columns):
        raise RequestError("'columns' names a feature twice", field="columns")
    if set(columns) != set(names):
        _key_error(columns, names, "columns")
    if not isinstance(data, list) or not data:
        raise RequestError("'data' must be a non-empty list of rows", field="data")
    if not all(isinstance(row, list) and len(row) == len(columns) for row in data):
        raise RequestError(f"every row of 'data' needs {len(columns)} values", field="data")
    order = [columns.index(n) for n in names]
    numbers = _numbers(data, model, body)
    if numbers is not None:
        return check_values(Rows(np.ascontiguousarray(numbers[:, order])), model)
    return rows_from_columns(model, [[row[i] for row in data] for i in order])


def _key_error(keys: Any, names: list[str], where: str) -> None:
    missing = [n for n in names if n not in keys]
    extra = [k for k in keys if k not in set(names)]
    if missing:
        raise RequestError(f"{where}: feature {missing[0]!r} is missing"
                           + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""), field=missing[0])
    raise RequestError(f"{where}: {extra[0]!r} is not a feature of the model", field=str(extra[0]))


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
