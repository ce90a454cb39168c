import math

import numpy as np
import orjson
import pytest

from mloop.serving.protocol import (
    RequestError,
    parse_plain,
    parse_v2,
    plain_response,
    v2_response,
)


def v2(inputs, **extra):
    return orjson.dumps({"inputs": inputs, **extra})


def test_one_two_dimensional_tensor_in_feature_order(small_model):
    request = parse_v2(v2([{"name": "input-0", "shape": [2, 3], "datatype": "FP32",
                            "data": [1, 2, 3, 4, 5, 6]}], id="r1"), small_model)
    assert request.rows.values.tolist() == [[1, 2, 3], [4, 5, 6]] and request.request_id == "r1"


def test_nested_data_is_accepted_like_flat_data(small_model):
    request = parse_v2(v2([{"name": "x", "shape": [2, 3], "datatype": "FP64", "data": [[1, 2, 3], [4, 5, 6]]}]),
                       small_model)
    assert request.rows.values.shape == (2, 3)


def test_one_tensor_per_feature_in_any_order(small_model):
    inputs = [{"name": n, "shape": [2], "datatype": "FP64", "data": d}
              for n, d in (("c", [3, 6]), ("a", [1, 4]), ("b", [2, 5]))]
    assert parse_v2(v2(inputs), small_model).rows.values.tolist() == [[1, 2, 3], [4, 5, 6]]


def test_binary_tensor_data_extension(small_model):
    data = np.arange(6, dtype="<f4").reshape(2, 3)
    header = orjson.dumps({"inputs": [{"name": "input-0", "shape": [2, 3], "datatype": "FP32",
                                       "parameters": {"binary_data_size": data.nbytes}}],
                           "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}]})
    request = parse_v2(header + data.tobytes(), small_model, header_length=len(header))
    assert request.rows.values.tolist() == data.tolist()
    assert request.outputs == ["probabilities"] and request.binary == {"probabilities"}
    body, json_length = v2_response(small_model, request, np.array([0, 1]), np.array([[0.9, 0.1], [0.2, 0.8]]))
    head = orjson.loads(body[:json_length])
    assert head["outputs"][0]["parameters"]["binary_data_size"] == 32
    assert np.frombuffer(body[json_length:], dtype="<f8").tolist() == [0.9, 0.1, 0.2, 0.8]


@pytest.mark.parametrize(("inputs", "status", "field", "message"), [
    ([{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}], 422, "x.shape", "takes [rows, 3]"),
    ([{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1, 2]}], 422, "x.data", "needs 3 values, got 2"),
    ([{"name": "x", "shape": [1, 3], "datatype": "BYTES", "data": ["a", "b", "c"]}], 422, "x.datatype", "not numeric"),
    ([{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1, "two", 3]}], 422, "x.data", "only numbers"),
    ([{"name": "x", "shape": [1, 1, 3], "datatype": "FP64", "data": [1, 2, 3]}], 422, "x.shape", "3 dimensions"),
    ([{"name": "x", "shape": [-1, 3], "datatype": "FP64", "data": [1, 2, 3]}], 422, "x.shape", "non-negative"),
    ([{"name": "a", "shape": [1], "datatype": "FP64", "data": [1]},
      {"name": "b", "shape": [1], "datatype": "FP64", "data": [1]}], 422, "c", "feature 'c' is missing"),
    ([{"name": "a", "shape": [1], "datatype": "FP64", "data": [1]},
      {"name": "zz", "shape": [1], "datatype": "FP64", "data": [1]}], 422, "zz", "'zz' is not a feature"),
    ([{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [None, 2, 3]}], 422, "a", "row 0 is missing"),
    ([{"shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}], 422, "inputs[0].name", "non-empty string"),
    ([], 422, "inputs", "non-empty list"),
])
def test_bad_v2_requests_name_the_field(small_model, inputs, status, field, message):
    with pytest.raises(RequestError) as info:
        parse_v2(v2(inputs), small_model)
    assert (info.value.status, info.value.field) == (status, field)
    assert message in info.value.message


def test_missing_value_is_allowed_where_training_had_some_and_the_model_copes(small_model):
    from dataclasses import replace

    from sklearn.ensemble import HistGradientBoostingClassifier

    from mloop.bundle.loaded import Feature

    rows = np.random.default_rng(0).normal(size=(100, 3))
    rows[::7, 2] = np.nan
    tolerant = HistGradientBoostingClassifier(max_iter=5).fit(rows, (rows[:, 0] > 0).astype(int))
    features = [Feature("a", "float", False), Feature("b", "float", False), Feature("c", "float", True)]
    model = replace(small_model, estimator=tolerant, features=features)
    assert model.features[2].allow_missing, "the model takes NaN, so the feature stays nullable"
    body = orjson.dumps({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, None]}]})
    assert math.isnan(parse_v2(body, model).rows.values[0, 2])


def test_malformed_json_and_body_shape_are_400(small_model):
    for body in (b"", b"{", b"[1, 2]"):
        with pytest.raises(RequestError) as info:
            parse_v2(body, small_model)
        assert info.value.status == 400


def test_binary_header_length_outside_body_is_400(small_model):
    with pytest.raises(RequestError) as info:
        parse_v2(b"{}", small_model, header_length=99)
    assert info.value.status == 400


def test_unknown_requested_output(small_model):
    body = v2([{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}], outputs=[{"name": "nope"}])
    with pytest.raises(RequestError, match="output 'nope' does not exist"):
        parse_v2(body, small_model)


def test_plain_json_forms_agree(small_model):
    instances = orjson.dumps({"instances": [{"a": 1, "b": 2, "c": 3}, {"c": 6, "b": 5, "a": 4}]})
    columns = orjson.dumps({"inputs": {"b": [2, 5], "a": [1, 4], "c": [3, 6]}})
    split = orjson.dumps({"columns": ["c", "a", "b"], "data": [[3, 1, 2], [6, 4, 5]]})
    for body in (instances, columns, split):
        assert parse_plain(body, small_model).values.tolist() == [[1, 2, 3], [4, 5, 6]]


@pytest.mark.parametrize(("payload", "field", "message"), [
    ({"instances": [{"a": 1, "b": 2}]}, "c", "feature 'c' is missing"),
    ({"instances": [{"a": 1, "b": 2, "c": 3, "d": 4}]}, "d", "'d' is not a feature"),
    ({"instances": [{"a": "x", "b": 2, "c": 3}]}, "a", 'expects a number, got "x"'),
    ({"instances": []}, "instances", "non-empty"),
    ({"inputs": {"a": [1], "b": [2, 3], "c": [1]}}, "inputs", "same length"),
    ({"columns": ["a", "b", "c"], "data": [[1, 2]]}, "data", "needs 3 values"),
    ({"columns": ["a", "a", "b"], "data": [[1, 2, 3]]}, "columns", "twice"),
    ({"rows": []}, "instances", "needs 'instances'"),
    ({"instances": [{"a": 1, "b": 2, "c": 3}], "data": [[1]]}, "data", "use one form per request"),
    ({"instances": [{"a": 1, "b": 2, "c": 3}], "inputs": {"a": [1]}}, "instances", "use one form per request"),
])
def test_bad_plain_requests_name_the_field(small_model, payload, field, message):
    with pytest.raises(RequestError) as info:
        parse_plain(orjson.dumps(payload), small_model)
    assert info.value.field == field and message in info.value.message


def test_plain_response_has_labels_and_named_probabilities(small_model):
    body = orjson.loads(plain_response(small_model, np.array([1]), np.array([[0.25, 0.75]])))
    assert body == {"model": "toy", "version": "3",
                    "predictions": [{"label": 1, "probabilities": {"0": 0.25, "1": 0.75}}]}
