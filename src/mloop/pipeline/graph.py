"""The pipeline graph: named step nodes wired by their outputs, checked before anything runs."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter
from typing import TYPE_CHECKING, Any

from mloop.errors import PipelineError, did_you_mean

if TYPE_CHECKING:
    from mloop.pipeline.candidate import ModelCandidate
    from mloop.pipeline.dsl import Step


@dataclass(frozen=True)
class OutputRef:
    """One named output of one node: what a downstream step receives."""

    node: str
    output: str

    def __str__(self) -> str:
        return f"{self.node}.{self.output}"


@dataclass(frozen=True)
class Location:
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class Node:
    """A step placed in a pipeline: where its data inputs come from and its parameter values."""

    name: str
    step: Step[..., Any]
    inputs: dict[str, OutputRef] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    location: Location | None = None

    @property
    def outputs(self) -> tuple[str, ...]:
        return self.step.outputs

    def where(self) -> str:
        return f" ({self.location})" if self.location else ""


class Graph:
    """A validated DAG of nodes in a stable topological order.

    Construction checks everything that can be checked without running: duplicate names, inputs
    that name a missing node or output, and cycles. Each error names the node and its file:line.
    ``results`` are the values the pipeline function returned (step outputs or plain values);
    ``candidate``, if it returned a ``ModelCandidate``, is the model to register.
    """

    def __init__(self, nodes: Iterable[Node], results: Mapping[str, Any] | None = None,
                 candidate: ModelCandidate | None = None) -> None:
        self.nodes: dict[str, Node] = {}
        for node in nodes:
            if node.name in self.nodes:
                first = self.nodes[node.name]
                raise PipelineError(
                    f"step name {node.name!r} is used twice: {first.where().strip(' ()') or '?'} "
                    f"and {node.where().strip(' ()') or '?'}",
                    hint=f"give one call its own name: {node.step.name}.with_name('{node.name}_2')(...)",
                )
            self.nodes[node.name] = node
        self.results: dict[str, Any] = dict(results or {})
        self.candidate = candidate
        self._rank = {name: index for index, name in enumerate(self.nodes)}  # declaration order: the tie-break
        self._check_inputs()
        self.order: list[str] = self._topological_order()
        self.downstream: dict[str, set[str]] = {name: set() for name in self.nodes}
        for node in self.nodes.values():
            for ref in node.inputs.values():
                self.downstream[ref.node].add(node.name)

    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[Node]:
        return (self.nodes[name] for name in self.order)

    def _check_inputs(self) -> None:
        for node in self.nodes.values():
            for param, ref in node.inputs.items():
                source = self.nodes.get(ref.node)
                if source is None:
                    raise PipelineError(
                        f"step {node.name!r}{node.where()}: input {param!r} comes from step {ref.node!r}, "
                        f"which is not in the pipeline; {did_you_mean(ref.node, self.nodes)}",
                        hint="add that step to the pipeline or wire the input to an existing one",
                    )
                if ref.output not in source.outputs:
                    raise PipelineError(
                        f"step {node.name!r}{node.where()}: input {param!r} wants output {ref.output!r} "
                        f"of step {ref.node!r}, which has outputs {list(source.outputs)}",
                        hint=f"declare it with @step(outputs=[...]) on {source.step.name}",
                    )

    def sorter(self) -> TopologicalSorter[str]:
        """A prepared ``graphlib.TopologicalSorter`` over the steps (each depends on its inputs' steps)."""
        sorter: TopologicalSorter[str] = TopologicalSorter(
            {name: list(dict.fromkeys(ref.node for ref in node.inputs.values())) for name, node in self.nodes.items()})
        try:
            sorter.prepare()
        except CycleError as err:
            cycle: list[str] = list(err.args[1])
            first = self.nodes[cycle[0]]
            raise PipelineError(
                f"the pipeline has a cycle: {' -> '.join(cycle)} (step {first.name!r}{first.where()})",
                hint="a step cannot depend, directly or not, on its own output; break the loop",
            ) from err
        return sorter

    def ready_in_order(self, names: Iterable[str]) -> list[str]:
        """``names`` in declaration order (independent steps run in the order they were written)."""
        return sorted(names, key=self._rank.__getitem__)

    def _topological_order(self) -> list[str]:
        sorter = self.sorter()
        order: list[str] = []
        while sorter.is_active():
            ready = self.ready_in_order(sorter.get_ready())
            order.extend(ready)
            sorter.done(*ready)
        return order

    def descendants(self, name: str) -> set[str]:
        """Every node that depends, directly or not, on ``name``."""
        found: set[str] = set()
        todo = [name]
        while todo:
            for user in self.downstream[todo.pop()]:
                if user not in found:
                    found.add(user)
                    todo.append(user)
        return found

    def width(self) -> int:
        """The most nodes that can run at once (the widest level of the DAG)."""
        level: dict[str, int] = {}
        for name in self.order:
            node = self.nodes[name]
            level[name] = 1 + max((level[ref.node] for ref in node.inputs.values()), default=-1)
        counts: dict[int, int] = {}
        for value in level.values():
            counts[value] = counts.get(value, 0) + 1
        return max(counts.values(), default=0)
