"""``@step`` and ``@pipeline``: plain Python functions wired by calling each other.

Inside a ``@pipeline`` function a step call does not run the step: it records a node and returns
handles to its outputs, so the whole graph is known (and checked) before anything runs. Outside a
pipeline a step is its plain function, so it can be unit-tested directly.
"""

from __future__ import annotations

import contextvars
import functools
import importlib
import inspect
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Protocol, TypeVar, overload

from mloop.errors import ParameterError, PipelineError, did_you_mean
from mloop.pipeline.candidate import ModelCandidate
from mloop.pipeline.graph import Graph, Location, Node, OutputRef

if TYPE_CHECKING:
    from mloop.pipeline.runner import RunResult

P = ParamSpec("P")
R = TypeVar("R")

_tracer: contextvars.ContextVar[_Tracer | None] = contextvars.ContextVar("mloop_tracer", default=None)

class RunOutcome(Protocol):
    """What running a pipeline in a project gives (``mloop.project.ProjectRun``), as the engine sees it."""

    @property
    def result(self) -> RunResult: ...

    @property
    def tracking_id(self) -> str: ...


# What ``Pipeline.run`` delegates to: the facade ``mloop.run``, handed in by ``mloop/__init__.py`` when the
# package is imported (the engine itself knows no projects, tracking or registry).
_project_runner: list[Callable[..., RunOutcome]] = []


def use_project_runner(runner: Callable[..., RunOutcome]) -> None:
    """Make ``Pipeline.run`` call ``runner(pipeline, **options)`` (done once, by the ``mloop`` facade)."""
    _project_runner[:] = [runner]


class Step(Generic[P, R]):
    """A pipeline step: a function, its name and the names of its outputs."""

    def __init__(self, fn: Callable[P, R], *, name: str | None = None, outputs: Iterable[str] = ("output",)) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        self.outputs = tuple(outputs)
        if not self.outputs or len(set(self.outputs)) != len(self.outputs):
            raise PipelineError(f"step {self.name!r}{_where(fn)}: outputs must be distinct names, got {self.outputs}")
        self.signature = inspect.signature(fn)
        for param in self.signature.parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise PipelineError(
                    f"step {self.name!r}{_where(fn)}: *{param.name} is not supported",
                    hint="give every input and parameter of a step its own name",
                )
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"<step {self.name}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        tracer = _tracer.get()
        if tracer is None:
            return self.fn(*args, **kwargs)
        return tracer.add(self, args, kwargs, _caller_location())  # type: ignore[no-any-return]

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle by reference (module and name) when the function's module can be imported; by value
        otherwise (a notebook cell, a nested function, a project's pipeline loaded from its file)."""
        module = getattr(self.fn, "__module__", None)
        qualname = getattr(self.fn, "__qualname__", "")
        if module and module != "__main__" and "<locals>" not in qualname and _resolve(module, qualname) is self.fn:
            return _step_by_reference, (module, qualname, self.name, self.outputs)
        return _step_by_value, (self.fn, self.name, self.outputs)

    def with_name(self, name: str) -> Step[P, R]:
        """The same step under another name, to use one function twice in a pipeline."""
        return Step(self.fn, name=name, outputs=self.outputs)

    def hints(self) -> dict[str, Any]:
        try:
            import typing

            return typing.get_type_hints(self.fn)
        except Exception:  # unresolved forward references: fall back to no coercion
            return {}


def _resolve(module_name: str, qualname: str) -> Any:
    """The function ``module:qualname`` names in a module already imported (a Step gives its function)."""
    found: Any = sys.modules.get(module_name)
    if found is None or getattr(found, "__spec__", None) is None or found.__spec__.name != module_name:
        return None  # not imported, or loaded under a name the import system cannot find again
    for part in qualname.split("."):
        found = getattr(found, part, None)
    return found.fn if isinstance(found, Step) else found


def _step_by_reference(module_name: str, qualname: str, name: str, outputs: tuple[str, ...]) -> Step[Any, Any]:
    importlib.import_module(module_name)
    fn = _resolve(module_name, qualname)
    if fn is None:
        raise PipelineError(f"step {name!r}: {module_name}.{qualname} is not found in this process",
                            hint="install the module where the pipeline runs, or define the step in the pipeline file")
    return Step(fn, name=name, outputs=outputs)


def _step_by_value(fn: Callable[..., Any], name: str, outputs: tuple[str, ...]) -> Step[Any, Any]:
    return Step(fn, name=name, outputs=outputs)


@overload
def step(fn: Callable[P, R], /) -> Step[P, R]: ...
@overload
def step(*, name: str | None = None, outputs: Iterable[str] = ("output",)) -> Callable[[Callable[P, R]], Step[P, R]]: ...
def step(fn: Any = None, /, *, name: str | None = None, outputs: Iterable[str] = ("output",)) -> Any:
    """Make a function a pipeline step.

    Arguments wired to another step's output are data inputs; all others are parameters (their
    defaults can be overridden with ``mloop run -p STEP.PARAM=VALUE``). A parameter annotated
    ``pathlib.Path`` is a file input: its content is part of the cache key. ``outputs`` names
    the outputs of a step that returns a tuple.
    """
    if fn is not None:
        return Step(fn)
    return lambda f: Step(f, name=name, outputs=outputs)


class Pipeline:
    """A ``@pipeline`` function: builds its graph on demand and runs it."""

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"<pipeline {self.name}>"

    def build(self, params: Mapping[str, Mapping[str, Any]] | None = None, **kwargs: Any) -> Graph:
        """Trace the pipeline function into a checked graph, with parameter overrides applied."""
        tracer = _Tracer()
        token = _tracer.set(tracer)
        try:
            returned = self.fn(**kwargs)
        finally:
            _tracer.reset(token)
        if not tracer.nodes:
            raise PipelineError(f"pipeline {self.name!r}{_where(self.fn)} calls no steps", hint="call @step functions in it")
        results, candidate = _results(returned, self)
        graph = Graph(tracer.nodes, results, candidate)
        if params:
            apply_params(graph, params)
        return graph

    def run(self, *, params: Mapping[str, Mapping[str, Any]] | None = None, project: str | Path | None = None,
            track: bool = True, use_cache: bool = True, **kwargs: Any) -> RunOutcome:
        """``mloop.run(pipeline, ...)``: run it in a project, cached, tracked and registered.

        Returns the run (a ``mloop.project.ProjectRun``). Raises StepFailed (after the other branches
        finished) if a step failed.
        """
        if not _project_runner:
            raise PipelineError("Pipeline.run needs the mloop package", hint="import mloop, then call mloop.run(pipeline)")
        return _project_runner[0](self, params=params, project=project, track=track, use_cache=use_cache, **kwargs)


def pipeline(fn: Callable[..., Any] | None = None, /, *, name: str | None = None) -> Any:
    """Make a function that calls steps a pipeline."""
    if fn is not None:
        return Pipeline(fn)
    return lambda f: Pipeline(f, name=name)


class _Tracer:
    def __init__(self) -> None:
        self.nodes: list[Node] = []

    def add(self, step: Step[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any], location: Location) -> Any:
        try:
            bound = step.signature.bind(*args, **kwargs)
        except TypeError as err:
            missing = [
                p.name for p in step.signature.parameters.values()
                if p.default is p.empty and p.name not in kwargs
            ][len(args):]
            what = f"input {missing[0]!r} is missing" if missing else str(err)
            raise PipelineError(
                f"step {step.name!r} at {location}: {what}",
                hint=f"pass it when calling {step.name}(...) in the pipeline, or give it a default",
            ) from err
        inputs: dict[str, OutputRef] = {}
        params: dict[str, Any] = {}
        for pname, param in step.signature.parameters.items():
            if pname in bound.arguments:
                value = bound.arguments[pname]
                if isinstance(value, OutputRef):
                    inputs[pname] = value
                elif _holds_ref(value):
                    raise PipelineError(
                        f"step {step.name!r} at {location}: argument {pname!r} puts a step output inside a container",
                        hint="pass each step output as its own argument",
                    )
                else:
                    params[pname] = value
            else:
                params[pname] = param.default
        self.nodes.append(Node(step.name, step, inputs, params, location))
        refs = tuple(OutputRef(step.name, out) for out in step.outputs)
        return refs[0] if len(refs) == 1 else refs


def _holds_ref(value: Any) -> bool:
    if isinstance(value, OutputRef):
        return True
    if isinstance(value, Mapping):
        return any(_holds_ref(v) for v in value.values())
    if isinstance(value, (list, tuple, set)):
        return any(_holds_ref(v) for v in value)
    return False


def _results(returned: Any, pipe: Pipeline) -> tuple[dict[str, Any], ModelCandidate | None]:
    """What the pipeline function returned: its results, and the model candidate if it is one."""
    if isinstance(returned, ModelCandidate):
        if not isinstance(returned.model, OutputRef):
            raise PipelineError(
                f"pipeline {pipe.name!r}{_where(pipe.fn)}: ModelCandidate.model is a "
                f"{type(returned.model).__name__}, not a step output",
                hint="return ModelCandidate(model=<the output of the step that trains it>, ...)",
            )
        if not isinstance(returned.target, str):
            raise PipelineError(f"pipeline {pipe.name!r}{_where(pipe.fn)}: ModelCandidate.target must be the name of "
                                f"the target column, got {returned.target!r}")
        return {}, returned
    if returned is None:
        return {}, None
    if isinstance(returned, OutputRef):
        return {"output": returned}, None
    if isinstance(returned, Mapping):
        return dict(returned), None
    raise PipelineError(
        f"pipeline {pipe.name!r}{_where(pipe.fn)} returned {type(returned).__name__}",
        hint="return nothing, a step output, a dict of step outputs, or mloop.ModelCandidate(...)",
    )


def apply_params(graph: Graph, overrides: Mapping[str, Mapping[str, Any]]) -> None:
    """Set step parameters from ``{step: {param: value}}``, coercing values to the annotated types.

    Raises ParameterError for an unknown step or parameter, a data input named as a parameter, or
    a value that does not fit the parameter's type.
    """
    for step_name, values in overrides.items():
        node = graph.nodes.get(step_name)
        if node is None:
            raise ParameterError(
                f"parameter override for unknown step {step_name!r}; {did_you_mean(step_name, graph.nodes)}",
                hint="use -p STEP.PARAM=VALUE with a step of this pipeline (mloop run --list shows them)",
            )
        if not isinstance(values, Mapping):
            raise ParameterError(f"parameters for step {step_name!r} must be a table of name = value, got {values!r}")
        hints = node.step.hints()
        for pname, raw in values.items():
            if pname in node.inputs:
                raise ParameterError(
                    f"{step_name}.{pname} is a data input wired from step {node.inputs[pname].node!r}, not a parameter",
                    hint="only arguments that are not step outputs can be overridden",
                )
            if pname not in node.params:
                raise ParameterError(
                    f"step {step_name!r}{node.where()} has no parameter {pname!r}; {did_you_mean(pname, node.params)}",
                    hint=f"parameters of {step_name}: {', '.join(node.params) or 'none'}",
                )
            node.params[pname] = coerce_param(f"{step_name}.{pname}", raw, hints.get(pname), node.params[pname])


def coerce_param(label: str, raw: Any, annotation: Any, default: Any) -> Any:
    """Convert a raw override (a CLI string or a TOML value) to the parameter's annotated type."""
    from pydantic import TypeAdapter, ValidationError

    target = annotation if annotation is not None else (type(default) if default is not None else Any)
    value = raw
    if isinstance(raw, str) and target is not str:
        value = parse_literal(raw)
    try:
        return TypeAdapter(target).validate_python(value, strict=False)
    except ValidationError as err:
        expected = getattr(target, "__name__", str(target))
        raise ParameterError(
            f"parameter {label} expects {expected}, got {raw!r}",
            hint=f"pass a value of type {expected}, e.g. -p {label}={default!r}" if default is not None else None,
        ) from err


def parse_literal(text: str) -> Any:
    """``"7"`` → 7, ``"0.5"`` → 0.5, ``"true"`` → True, ``"[1, 2]"`` → [1, 2]; anything else stays text."""
    import json

    try:
        return json.loads(text)
    except ValueError:
        return text


def _caller_location() -> Location:
    frame = sys._getframe(2)
    return Location(_short(frame.f_code.co_filename), frame.f_lineno)


def _where(fn: Callable[..., Any]) -> str:
    code = getattr(fn, "__code__", None)
    return f" ({_short(code.co_filename)}:{code.co_firstlineno})" if code else ""


def _short(filename: str) -> str:
    try:
        return str(Path(filename).resolve().relative_to(Path.cwd()))
    except ValueError:
        return filename
