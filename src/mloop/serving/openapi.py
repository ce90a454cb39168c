"""The server's OpenAPI 3 document, built from its route table and its model (the features are in the schemas).

Each route of ``mloop.serving.asgi.ROUTES`` names its operation here (a function of the served
model); ``document`` adds the path parameters and, when the server has a token, the security
requirement, so the document describes exactly this server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from mloop._version import __version__
from mloop.bundle.loaded import Feature, LoadedModel
from mloop.serving.protocol import V2_DTYPES

Operation = Callable[[LoadedModel], dict[str, Any]]

ERROR = {"type": "object", "required": ["error"],
         "properties": {"error": {"type": "string"}, "field": {"type": "string"}}}
_ERRORS = {400: "malformed body", 401: "missing or wrong bearer token", 404: "unknown model or version",
           403: "the alert receiver is off: the server has no token", 405: "wrong method",
           409: "the id names an earlier prediction (labelled already, for feedback)", 413: "body over the limit",
           415: "unsupported media type", 422: "the body does not fit the model"}
JSON_OK = {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): {"description": _ERRORS[c], "content": {"application/json": {"schema": ERROR}}} for c in codes}


def get(summary: str, errors: tuple[int, ...] = ()) -> Operation:
    """A GET answering a JSON object."""
    return lambda model: {"summary": summary, "responses": {"200": JSON_OK, **_errors(*errors)}}


def _tensor() -> dict[str, Any]:
    return {"type": "object", "required": ["name", "shape", "datatype", "data"], "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1, "maxItems": 2},
        "datatype": {"type": "string", "enum": list(V2_DTYPES)},
        "data": {"type": "array", "items": {}},
        "parameters": {"type": "object"}}}


def infer(model: LoadedModel) -> dict[str, Any]:
    request = {"type": "object", "required": ["inputs"], "properties": {
        "id": {"type": "string"},
        "parameters": {"type": "object"},
        "inputs": {"type": "array", "items": _tensor(), "minItems": 1},
        "outputs": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string"}, "parameters": {"type": "object"}}}}}}
    response = {"type": "object", "required": ["model_name", "outputs"], "properties": {
        "model_name": {"type": "string"}, "model_version": {"type": "string"}, "id": {"type": "string"},
        "outputs": {"type": "array", "items": {"type": "object"}}}}
    return {"summary": "Inference (Open Inference / KServe V2)",
            "requestBody": {"required": True, "content": {"application/json": {"schema": request}}},
            "responses": {"200": {"description": "predictions", "content": {"application/json": {"schema": response}}},
                          **_errors(400, 404, 409, 413, 422)}}


def _feature_schema(feature: Feature) -> dict[str, Any]:
    """One feature's JSON type: a number, a whole number, true/false, or a string (a category)."""
    schema: dict[str, Any] = {"type": {"float": "number", "integer": "integer", "boolean": "boolean",
                                       "categorical": "string"}[feature.type]}
    if feature.type == "categorical" and feature.categories:
        shown = feature.categories[:20]
        schema["description"] = ("a category, e.g. " + ", ".join(repr(c) for c in shown)
                                 + (" ..." if len(feature.categories) > len(shown) else "")
                                 + " (one training never saw is taken too)")
    if feature.allow_missing:
        schema["nullable"] = True
    return schema


def predict(model: LoadedModel) -> dict[str, Any]:
    names = [f.name for f in model.features]
    feature_props = {f.name: _feature_schema(f) for f in model.features}
    numbers_only = all(f.type == "float" for f in model.features)
    cell: dict[str, Any] = {"type": "number"} if numbers_only else {}  # a row of mixed types: each as its feature
    request = {"type": "object", "additionalProperties": False, "minProperties": 1, "properties": {
        "instances": {"type": "array", "minItems": 1,
                      "items": {"type": "object", "required": names, "properties": feature_props}},
        "inputs": {"type": "object", "properties": {n: {"type": "array", "items": feature_props[n]} for n in names}},
        "columns": {"type": "array", "items": {"type": "string", "enum": names}},
        "data": {"type": "array", "items": {"type": "array", "items": cell}}}}
    if model.classes:
        answer = {"type": "object", "required": ["label"], "properties": {
            "label": _label_schema(model), "probabilities": {"type": "object", "additionalProperties": {"type": "number"},
                                                              "description": "per class name"}}}
        what = "labels and probabilities"
    else:
        answer = {"type": "object", "required": ["prediction"], "properties": {"prediction": {"type": "number"}}}
        what = "predicted values"
    response = {"type": "object", "required": ["model", "version", "predictions"], "properties": {
        "model": {"type": "string"}, "version": {"type": "string"},
        "predictions": {"type": "array", "items": answer}}}
    return {"summary": "Plain JSON prediction: instances, column inputs, or columns + data",
            "requestBody": {"required": True, "content": {"application/json": {"schema": request}}},
            "responses": {"200": {"description": what, "content": {
                "application/json": {"schema": response}}}, **_errors(400, 409, 413, 422)}}


def _label_schema(model: LoadedModel) -> dict[str, Any]:
    """A class of the model (integers, strings), or a number for a regressor."""
    classes = list(model.classes)
    if not classes:
        return {"type": "number"}
    if all(isinstance(c, bool) for c in classes):
        return {"type": "boolean"}
    if all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        return {"type": "integer", "enum": classes}
    if all(isinstance(c, str) for c in classes):
        return {"type": "string", "enum": classes}
    return {"enum": classes}


def predict_batch(model: LoadedModel) -> dict[str, Any]:
    return {"summary": "Score a CSV (or, with ?format=parquet, a Parquet) file; the scored file comes back",
            "requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}},
            "responses": {"200": {"description": "the scored file", "content": {
                "text/csv": {"schema": {"type": "string"}}}}, **_errors(400, 413, 415, 422)}}


def feedback(model: LoadedModel) -> dict[str, Any]:
    what = "one true class per predicted row" if model.classes else "one true value per predicted row"
    item = {"type": "object", "required": ["id", "labels"], "properties": {
        "id": {"type": "string", "description": "the x-request-id of the prediction (or a V2 request's own id)"},
        "labels": {"type": "array", "items": _label_schema(model), "minItems": 1, "description": what}}}
    scores = "accuracy, precision, recall, F1" if model.classes else "MAE, RMSE, R²"
    return {"summary": f"True labels for served predictions (live {scores}); final: a second set is a 409",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": [
                item, {"type": "object", "required": ["items"], "properties": {
                    "items": {"type": "array", "items": item, "minItems": 1}}}]}}}},
            "responses": {"200": JSON_OK, **_errors(400, 404, 409, 422)}}


def alert_receiver(model: LoadedModel) -> dict[str, Any]:
    alert = {"type": "object", "required": ["status", "labels"], "properties": {
        "status": {"type": "string", "enum": ["firing", "resolved"]},
        "labels": {"type": "object", "required": ["alertname"], "properties": {"alertname": {"type": "string"}}},
        "annotations": {"type": "object"}, "startsAt": {"type": "string"}}}
    return {"summary": "Alertmanager's webhook receiver: its alerts are logged and forwarded like mloop's own "
                       "(needs the server's alert token)",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["alerts"], "properties": {"alerts": {"type": "array", "items": alert}}}}}},
            "responses": {"200": JSON_OK, **_errors(400, 401, 403, 422)}}


def metrics(model: LoadedModel) -> dict[str, Any]:
    return {"summary": "Prometheus metrics", "responses": {
        "200": {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}}}}


def _parameters(path: str, model: LoadedModel) -> list[dict[str, Any]]:
    params = []
    if "{model_name}" in path:
        params.append({"name": "model_name", "in": "path", "required": True,
                       "schema": {"type": "string", "enum": [model.name]}})
    if "{model_version}" in path:
        params.append({"name": "model_version", "in": "path", "required": True,
                       "schema": {"type": "string", "enum": [model.version]}})
    return params


def document(model: LoadedModel, routes: Iterable[tuple[str, str, Operation, bool]]) -> dict[str, Any]:
    """The document of routes ``(path, method, operation, needs a bearer token)`` serving ``model``.

    A route that needs a token says so (``security``) and may answer 401; one that does not declares none.
    """
    paths: dict[str, dict[str, Any]] = {}
    secured_any = False
    for path, method, operation, secured in routes:
        op = operation(model)
        parameters = _parameters(path, model)
        if parameters:
            op["parameters"] = parameters
        if secured:
            secured_any = True
            op["security"] = [{"bearer": []}]
            op["responses"] = {**op["responses"], **_errors(401)}
        paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.0.3",
        "info": {"title": f"mloop model server: {model.name}", "version": __version__,
                 "description": f"Serves {model.name} v{model.version}: the Open Inference (KServe V2) "
                                "protocol, plain JSON and batch scoring."},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}} if secured_any else {},
        "paths": paths,
    }
