import pytest

from mloop.errors import PipelineError
from mloop.pipeline.dsl import step
from mloop.pipeline.graph import Graph, Location, Node, OutputRef


@step
def a() -> int:
    return 1


def node(name, inputs=None):
    return Node(name, a.with_name(name), {k: OutputRef(v, "output") for k, v in (inputs or {}).items()},
                location=Location("flow.py", 10))


def test_order_is_topological_and_keeps_declaration_order_for_independent_nodes():
    graph = Graph([node("load"), node("x", {"d": "load"}), node("y", {"d": "load"}), node("z", {"p": "x", "q": "y"})])
    assert graph.order == ["load", "x", "y", "z"]
    assert graph.width() == 2
    assert graph.descendants("load") == {"x", "y", "z"}
    assert graph.descendants("x") == {"z"}


def test_cycle_is_reported_with_the_loop_and_location():
    with pytest.raises(PipelineError, match=r"cycle: .*(b -> c -> b|c -> b -> c).*flow.py:10"):
        Graph([node("a"), node("b", {"i": "c"}), node("c", {"i": "b"})])


def test_input_from_unknown_node_suggests_the_closest_name():
    with pytest.raises(PipelineError, match=r"step 'train'.*'laod'.*did you mean 'load'"):
        Graph([node("load"), node("train", {"data": "laod"})])


def test_input_of_undeclared_output_names_the_outputs():
    bad = Node("train", a.with_name("train"), {"data": OutputRef("load", "features")})
    with pytest.raises(PipelineError, match=r"wants output 'features' of step 'load'.*\['output'\]"):
        Graph([node("load"), bad])


def test_duplicate_step_names_are_rejected_with_both_locations():
    with pytest.raises(PipelineError, match=r"'load' is used twice: flow.py:10 and flow.py:10"):
        Graph([node("load"), node("load")])
