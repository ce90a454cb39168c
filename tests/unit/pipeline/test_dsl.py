from pathlib import Path

import pytest

from mloop.errors import ParameterError, PipelineError
from mloop.pipeline.dsl import apply_params, coerce_param, parse_literal, pipeline, step


@step
def load(path: Path = Path("data.csv")) -> list[int]:
    return [1, 2, 3]


@step(outputs=("train", "test"))
def split(data: list[int], ratio: float = 0.5) -> tuple[list[int], list[int]]:
    cut = int(len(data) * ratio)
    return data[:cut], data[cut:]


@step
def fit(train: list[int], n_neighbors: int = 5, weights: str = "uniform") -> int:
    return sum(train) * n_neighbors


@pipeline
def flow():
    train, test = split(load())
    return {"model": fit(train), "test": test}


def test_a_step_called_outside_a_pipeline_is_its_plain_function():
    assert split([1, 2, 3, 4]) == ([1, 2], [3, 4])
    assert fit([1, 2], n_neighbors=2) == 6


def test_build_records_inputs_params_outputs_and_results():
    graph = flow.build()
    assert graph.order == ["load", "split", "fit"]
    assert graph.nodes["split"].inputs["data"].node == "load"
    assert graph.nodes["fit"].params == {"n_neighbors": 5, "weights": "uniform"}
    assert set(graph.results) == {"model", "test"}
    assert graph.nodes["fit"].location.file.endswith("test_dsl.py")


def test_missing_input_names_the_step_and_call_site():
    @pipeline
    def broken():
        fit()

    with pytest.raises(PipelineError, match=r"step 'fit' at .*test_dsl.py:\d+: input 'train' is missing"):
        broken.build()


def test_step_output_inside_a_container_is_rejected():
    @pipeline
    def broken():
        data = load()
        fit([data])

    with pytest.raises(PipelineError, match="puts a step output inside a container"):
        broken.build()


def test_varargs_steps_are_rejected_at_definition():
    with pytest.raises(PipelineError, match=r"\*rest is not supported"):
        step(lambda *rest: None)


def test_same_step_twice_needs_a_name():
    @pipeline
    def twice():
        data = load()
        fit(data)
        fit(data)

    with pytest.raises(PipelineError, match=r"(?s)'fit' is used twice.*with_name"):
        twice.build()

    @pipeline
    def renamed():
        data = load()
        fit(data)
        fit.with_name("fit_2")(data)

    assert renamed.build().order == ["load", "fit", "fit_2"]


def test_overrides_are_coerced_to_the_annotated_type():
    graph = flow.build({"fit": {"n_neighbors": "7"}, "split": {"ratio": "0.25"}})
    assert graph.nodes["fit"].params["n_neighbors"] == 7
    assert graph.nodes["split"].params["ratio"] == 0.25


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"fitt": {"n_neighbors": 3}}, r"unknown step 'fitt'; did you mean 'fit'"),
        ({"fit": {"n_neighbor": 3}}, r"no parameter 'n_neighbor'; did you mean 'n_neighbors'"),
        ({"fit": {"train": 3}}, r"fit.train is a data input wired from step 'split'"),
        ({"fit": {"n_neighbors": "seven"}}, r"fit.n_neighbors expects int, got 'seven'"),
        ({"fit": {"n_neighbors": "2.5"}}, r"fit.n_neighbors expects int, got '2.5'"),
    ],
)
def test_bad_overrides_name_the_problem(overrides, message):
    with pytest.raises(ParameterError, match=message):
        flow.build(overrides)


def test_string_parameters_keep_text_that_looks_like_json():
    graph = flow.build()
    apply_params(graph, {"fit": {"weights": "123"}})
    assert graph.nodes["fit"].params["weights"] == "123"


def test_parse_literal_and_coercion():
    assert parse_literal("7") == 7
    assert parse_literal("[1, 2]") == [1, 2]
    assert parse_literal("true") is True
    assert parse_literal("abc") == "abc"
    assert coerce_param("s.p", "data/x.csv", Path, Path("d")) == Path("data/x.csv")


def test_pipeline_that_calls_no_step_is_an_error():
    @pipeline
    def empty():
        return None

    with pytest.raises(PipelineError, match="calls no steps"):
        empty.build()
