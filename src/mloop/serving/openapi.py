"""The server's OpenAPI 3 document, built from the served model (its features are in the schemas)."""

from __future__ import annotations

from typing import Any

from mloop import __version__
from mloop.models.loaded import LoadedModel
from mloop.serving.protocol import V2_DTYPES

ERROR = {"type": "object", "required": ["error"],
         "properties": {"error": {"type": "string"}, "field": {"type": "string"}}}


def _error_responses(*codes: int) -> dict[str, Any]:
    text = {400: "malformed body", 401: "missing or wrong bearer token", 404: "unknown model or version",
            403: "the alert receiver is off: the server has no token", 405: "wrong method",
            413: "body over the limit", 415: "unsupported media type",
            422: "the body does not fit the model"}
    return {str(c): {"description": text[c], "content": {"application/json": {"schema": ERROR}}} for c in codes}


def openapi(model: LoadedModel) -> dict[str, Any]:
    number = {"type": "number"}
    feature_props = {f.name: ({"type": "number", "nullable": True} if f.allow_missing else number)
                     for f in model.features}
    names = [f.name for f in model.features]
    tensor = {
        "type": "object", "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1, "maxItems": 2},
            "datatype": {"type": "string", "enum": list(V2_DTYPES)},
            "data": {"type": "array", "items": {}},
            "parameters": {"type": "object"},
        },
    }
    infer_request = {"type": "object", "required": ["inputs"], "properties": {
        "id": {"type": "string"},
        "parameters": {"type": "object"},
        "inputs": {"type": "array", "items": tensor, "minItems": 1},
        "outputs": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string"}, "parameters": {"type": "object"}}}},
    }}
    infer_response = {"type": "object", "required": ["model_name", "outputs"], "properties": {
        "model_name": {"type": "string"}, "model_version": {"type": "string"}, "id": {"type": "string"},
        "outputs": {"type": "array", "items": {"type": "object"}}}}
    plain_request = {"type": "object", "additionalProperties": False, "minProperties": 1, "properties": {
        "instances": {"type": "array", "minItems": 1,
                      "items": {"type": "object", "required": names, "properties": feature_props}},
        "inputs": {"type": "object", "properties": {n: {"type": "array", "items": number} for n in names}},
        "columns": {"type": "array", "items": {"type": "string", "enum": names}},
        "data": {"type": "array", "items": {"type": "array", "items": number}},
    }}
    plain_response = {"type": "object", "required": ["model", "version", "predictions"], "properties": {
        "model": {"type": "string"}, "version": {"type": "string"},
        "predictions": {"type": "array", "items": {"type": "object", "required": ["label"]}}}}
    model_params = [{"name": "model_name", "in": "path", "required": True,
                     "schema": {"type": "string", "enum": [model.name]}}]
    version_params = [*model_params, {"name": "model_version", "in": "path", "required": True,
                                      "schema": {"type": "string", "enum": [model.version]}}]
    json_ok = {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}

    label = {"type": "integer"} if all(isinstance(c, int) for c in model.classes) else {}
    feedback_item = {"type": "object", "required": ["id", "labels"], "properties": {
        "id": {"type": "string", "description": "the x-request-id of the prediction"},
        "labels": {"type": "array", "items": label, "minItems": 1}}}
    feedback = {"post": {
        "summary": "True labels for served predictions (live accuracy, precision, recall)",
        "requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": [
            feedback_item, {"type": "object", "required": ["items"], "properties": {
                "items": {"type": "array", "items": feedback_item, "minItems": 1}}}]}}}},
        "responses": {"200": json_ok, **_error_responses(400, 401, 404, 422)}}}

    def infer(params: list[dict[str, Any]]) -> dict[str, Any]:
        return {"post": {"summary": "Inference (Open Inference / KServe V2)", "parameters": params,
                         "requestBody": {"required": True, "content": {"application/json": {"schema": infer_request}}},
                         "responses": {"200": {"description": "predictions", "content": {
                             "application/json": {"schema": infer_response}}},
                             **_error_responses(400, 401, 404, 413, 422)}}}

    def get(summary: str, params: list[dict[str, Any]] | None = None, errors: tuple[int, ...] = (401,)) -> dict[str, Any]:
        return {"get": {"summary": summary, "parameters": params or [],
                        "responses": {"200": json_ok, **_error_responses(*errors)}}}

    return {
        "openapi": "3.0.3",
        "info": {"title": f"mloop model server: {model.name}", "version": __version__,
                 "description": f"Serves {model.name} v{model.version}: the Open Inference (KServe V2) "
                                "protocol, plain JSON and batch scoring."},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": {
            "/v2": get("Server metadata"),
            "/v2/health/live": get("Liveness", errors=()),
            "/v2/health/ready": get("Readiness", errors=()),
            "/v2/models/{model_name}": get("Model metadata", model_params, (401, 404)),
            "/v2/models/{model_name}/ready": get("Model readiness", model_params, (401, 404)),
            "/v2/models/{model_name}/versions/{model_version}": get("Model metadata", version_params, (401, 404)),
            "/v2/models/{model_name}/infer": infer(model_params),
            "/v2/models/{model_name}/versions/{model_version}/infer": infer(version_params),
            "/predict": {"post": {
                "summary": "Plain JSON prediction: instances, column inputs, or columns + data",
                "requestBody": {"required": True, "content": {"application/json": {"schema": plain_request}}},
                "responses": {"200": {"description": "labels and probabilities", "content": {
                    "application/json": {"schema": plain_response}}}, **_error_responses(400, 401, 413, 422)}}},
            "/predict/batch": {"post": {
                "summary": "Score a CSV (or, with ?format=parquet, a Parquet) file; the scored file comes back",
                "requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}},
                "responses": {"200": {"description": "the scored file", "content": {
                    "text/csv": {"schema": {"type": "string"}}}}, **_error_responses(400, 401, 413, 415, 422)}}},
            "/feedback": feedback,
            "/v2/models/{model_name}/feedback": {"post": {**feedback["post"], "parameters": model_params}},
            "/alerts/webhook": {"post": {
                "summary": "Alertmanager's webhook receiver: its alerts are logged and forwarded like mloop's own "
                           "(needs the server's alert token)",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["alerts"], "properties": {"alerts": {"type": "array", "items": {
                        "type": "object", "required": ["status", "labels"], "properties": {
                            "status": {"type": "string", "enum": ["firing", "resolved"]},
                            "labels": {"type": "object", "required": ["alertname"],
                                       "properties": {"alertname": {"type": "string"}}},
                            "annotations": {"type": "object"}, "startsAt": {"type": "string"}}}}}}}}},
                "responses": {"200": json_ok, **_error_responses(400, 401, 403, 422)}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {
                "200": {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}},
                **_error_responses(401)}}},
        },
    }
