"""Cache keys and the step cache index under ``.mloop/cache``.

A step's key is the SHA-256 of its code (its source and the source of same-module functions it
calls), its parameters, the digests of its data inputs and, for file inputs, the files' content.
An entry maps a key to the digests of the step's outputs and what it logged, so a fully cached run
loads nothing but these small JSON files.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mloop.errors import DataError
from mloop._fs import atomic_write_text, move_aside
from mloop.pipeline.artifacts import ArtifactRef, ArtifactStore, file_digest

CACHE_FORMAT = 1


def code_digest(fn: Any) -> str:
    """Hash of a function's source plus the sources of functions and classes of its own module it uses."""
    h = hashlib.sha256()
    seen: set[int] = set()
    fn = getattr(fn, "fn", fn)  # a Step wraps its function
    module = getattr(fn, "__module__", None)
    module_file = getattr(fn, "__globals__", {}).get("__file__")

    def visit(obj: Any) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        try:
            h.update(_source(obj, module_file).encode())
        except (OSError, TypeError):
            code = getattr(obj, "__code__", None)
            h.update(code.co_code if code else repr(obj).encode())
        code = getattr(obj, "__code__", None)
        if code is None:
            return
        globals_ = getattr(obj, "__globals__", {})
        for name in _names(code):
            target = globals_.get(name)
            target = getattr(target, "fn", target)  # a Step wraps its function
            if isinstance(target, (types.FunctionType, type)) and target.__module__ == module:
                visit(target)

    visit(fn)
    return h.hexdigest()


def _source(obj: Any, module_file: str | None) -> str:
    """The source of a function or class. A class of a project's pipeline file is found in that file: the
    module is not in ``sys.modules`` (see ``mloop.project.load_pipeline``), where ``inspect`` looks classes up."""
    if not isinstance(obj, type) or not module_file:
        return inspect.getsource(obj)
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        import ast
        import linecache

        linecache.checkcache(module_file)
        text = "".join(linecache.getlines(module_file))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and node.name == obj.__name__:
                return ast.get_source_segment(text, node) or ""
        raise


def _names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def is_file_param(value: Any, hint: Any) -> bool:
    """A ``pathlib.Path`` value, or a string for a parameter annotated ``Path``: a file input."""
    return isinstance(value, Path) or (hint is Path and isinstance(value, str))


def file_inputs(params: dict[str, Any], hints: dict[str, Any], root: Path, step: str) -> dict[str, str]:
    """Content digests of parameters that are files (``pathlib.Path`` values or annotations)."""
    digests: dict[str, str] = {}
    for name, value in params.items():
        if is_file_param(value, hints.get(name)):
            path = Path(value)
            path = path if path.is_absolute() else root / path
            if not path.exists():
                versioned = any(Path(f"{p}.dvc").is_file() for p in (path, *path.parents))  # DVC has it: pull
                raise DataError(
                    f"step {step!r}: input file {value} does not exist (looked in {path.parent})",
                    hint=(f"it is versioned with DVC: mloop data pull puts it back (or point the step elsewhere "
                          f"with -p {step}.{name}=PATH)" if versioned else
                          f"create it, or point the step elsewhere with -p {step}.{name}=PATH"),
                )
            digests[name] = file_digest(path)
    return digests


def cache_key(code: str, params: dict[str, Any], inputs: dict[str, str], files: dict[str, str],
              outputs: tuple[str, ...]) -> str:
    payload = {
        "format": CACHE_FORMAT,
        "code": code,
        "params": {k: _canonical(v) for k, v in sorted(params.items())},
        "inputs": dict(sorted(inputs.items())),
        "files": dict(sorted(files.items())),
        "outputs": list(outputs),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=repr).encode()).hexdigest()


def _canonical(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    return value


@dataclass
class CacheEntry:
    """What a finished step produced: output refs, logged metrics and files, and its timing."""

    step: str
    outputs: dict[str, ArtifactRef]
    metrics: dict[str, float] = field(default_factory=dict)
    files: dict[str, ArtifactRef] = field(default_factory=dict)
    duration_s: float = 0.0

    def to_json(self) -> str:
        return json.dumps({
            "format": CACHE_FORMAT,
            "step": self.step,
            "outputs": {k: v.to_dict() for k, v in self.outputs.items()},
            "metrics": self.metrics,
            "files": {k: v.to_dict() for k, v in self.files.items()},
            "duration_s": self.duration_s,
        }, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CacheEntry:
        data = json.loads(text)
        return cls(
            step=data["step"],
            outputs={k: ArtifactRef.from_dict(v) for k, v in data["outputs"].items()},
            metrics=data.get("metrics", {}),
            files={k: ArtifactRef.from_dict(v) for k, v in data.get("files", {}).items()},
            duration_s=data.get("duration_s", 0.0),
        )


class StepCache:
    """``key -> CacheEntry`` as one JSON file per key; a missing or unreadable entry is a miss."""

    def __init__(self, root: Path, store: ArtifactStore) -> None:
        self.root = root
        self.store = store

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> CacheEntry | None:
        try:
            entry = CacheEntry.from_json(self._path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        refs = [*entry.outputs.values()]
        if not all(self.store.exists(ref) for ref in refs):
            return None
        if not all(self.store.exists(ref) for ref in entry.files.values()):
            return None
        return entry

    def put(self, key: str, entry: CacheEntry) -> None:
        path = self._path(key)
        if path.is_dir():  # not an entry: moved aside, so the real one can be written
            move_aside(path, self.root / "quarantine")
        atomic_write_text(path, entry.to_json())
