"""The content-addressed artifact store under ``.mloop/objects`` and the materializers it uses.

An object is stored once, by the SHA-256 of its serialized bytes. Every write goes to a temporary
file in the store and is renamed into place, so a step killed mid-write never leaves a corrupt
object; an object damaged later (a full disk, a bad sector) is found by its size at every cache lookup
or by its digest when it does not load, moved to ``quarantine/``, and rewritten by the next run that
makes it. Materializers are looked up by the fully qualified names in the value's type MRO, so
checking a value never imports pandas or scikit-learn on its own.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from mloop._fs import commit, move_aside, temporary_path
from mloop.errors import MaterializerError, StoreError


@dataclass(frozen=True)
class ArtifactRef:
    """Where a stored value lives: its digest, how to read it back, and what it was."""

    digest: str
    materializer: str
    type_name: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArtifactRef:
        """TypeError unless ``data`` holds the four fields with their types (a damaged cache entry is a miss)."""
        ref = cls(**data)
        if not (isinstance(ref.digest, str) and len(ref.digest) == 64 and isinstance(ref.materializer, str)
                and isinstance(ref.type_name, str) and isinstance(ref.size, int)):
            raise TypeError(f"not an artifact reference: {data!r}")
        return ref


class Materializer(Protocol):
    """Writes one kind of value to a file and reads it back."""

    name: str
    suffix: str

    def save(self, value: Any, path: Path) -> None: ...

    def load(self, path: Path) -> Any: ...


class JsonMaterializer:
    name = "json"
    suffix = ".json"

    def save(self, value: Any, path: Path) -> None:
        path.write_text(json.dumps(value, sort_keys=True, allow_nan=True), encoding="utf-8")

    def load(self, path: Path) -> Any:
        return json.loads(path.read_text(encoding="utf-8"))


class ParquetMaterializer:
    name = "parquet"
    suffix = ".parquet"

    def save(self, value: Any, path: Path) -> None:
        import pandas as pd

        frame = value.to_frame() if isinstance(value, pd.Series) else value
        kind = "series" if isinstance(value, pd.Series) else "frame"
        frame.attrs = {**frame.attrs, "mloop_kind": kind}
        frame.to_parquet(path, engine="pyarrow", index=True)

    def load(self, path: Path) -> Any:
        import pandas as pd

        frame = pd.read_parquet(path, engine="pyarrow")
        if frame.attrs.get("mloop_kind") == "series":
            return frame.iloc[:, 0]
        frame.attrs.pop("mloop_kind", None)
        return frame


class NumpyMaterializer:
    name = "numpy"
    suffix = ".npy"

    def save(self, value: Any, path: Path) -> None:
        import numpy as np

        if value.dtype == object:
            raise MaterializerError("numpy arrays of dtype object cannot be stored as .npy")
        with path.open("wb") as fh:
            np.save(fh, value, allow_pickle=False)

    def load(self, path: Path) -> Any:
        import numpy as np

        return np.load(path, allow_pickle=False)


class PickleMaterializer:
    """For scikit-learn estimators and any other picklable value (cloudpickle for lambdas)."""

    name = "pickle"
    suffix = ".pkl"

    def save(self, value: Any, path: Path) -> None:
        import cloudpickle

        with path.open("wb") as fh:
            cloudpickle.dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)

    def load(self, path: Path) -> Any:
        with path.open("rb") as fh:
            return pickle.load(fh)  # noqa: S301 - only objects this project's own steps wrote


_BY_NAME: dict[str, Materializer] = {}
_BY_TYPE: dict[str, str] = {}  # "module.QualName" of a type -> materializer name


def register_materializer(materializer: Materializer, *type_names: str) -> None:
    """Store values of these types (fully qualified names, matched along the MRO) with ``materializer``."""
    _BY_NAME[materializer.name] = materializer
    for type_name in type_names:
        _BY_TYPE[type_name] = materializer.name


register_materializer(ParquetMaterializer(), "pandas.DataFrame", "pandas.core.frame.DataFrame",
                      "pandas.Series", "pandas.core.series.Series")
register_materializer(NumpyMaterializer(), "numpy.ndarray")
register_materializer(PickleMaterializer(), "sklearn.base.BaseEstimator")
register_materializer(JsonMaterializer())


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _is_json(value: Any, depth: int = 0) -> bool:
    if depth > 50:
        return False
    if value is None or isinstance(value, (bool, str)) or type(value) in (int, float):
        return True
    if type(value) in (list, tuple):
        return type(value) is list and all(_is_json(v, depth + 1) for v in value)
    if type(value) is dict:
        return all(isinstance(k, str) and _is_json(v, depth + 1) for k, v in value.items())
    return False


def materializer_for(value: Any) -> Materializer:
    """The materializer for a value: registered types first, JSON for plain data, else pickle."""
    for cls in type(value).__mro__:
        name = _BY_TYPE.get(_qualname(cls))
        if name:
            return _BY_NAME[name]
    if _is_json(value):
        return _BY_NAME["json"]
    return _BY_NAME["pickle"]


class ArtifactStore:
    """Values stored by content digest in ``root/ab/abcdef....suffix``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, ref: ArtifactRef) -> Path:
        suffix = _BY_NAME[ref.materializer].suffix if ref.materializer in _BY_NAME else ""
        return self.root / ref.digest[:2] / f"{ref.digest}{suffix}"

    def exists(self, ref: ArtifactRef) -> bool:
        """Whether the object is there whole: a file of the recorded size (a cheap check, made at every cache
        lookup; a truncated object is a miss, so its step runs again and ``put`` rewrites it)."""
        try:
            return self.path(ref).stat().st_size == ref.size
        except OSError:
            return False

    def intact(self, path: Path) -> bool:
        """Whether a stored file's content still hashes to the digest it is named after (a full read)."""
        try:
            return file_digest(path) == path.name.split(".", 1)[0]
        except OSError:
            return False

    def quarantine(self, path: Path) -> Path:
        """Move a damaged object out of the store (into ``quarantine/``, for a look), so nothing reads it
        again and the step that made it runs anew."""
        return move_aside(path, self.root / "quarantine")

    def _keep(self, tmp: Path, final: Path) -> None:
        """``tmp`` (hashed already) becomes ``final`` unless an intact copy is there: an object damaged on disk
        (truncated by a full disk, a bad sector) is rewritten by the next run that produces it."""
        if final.is_dir():  # something else's: out of the way, kept for a look
            self.quarantine(final)
        if final.exists() and final.stat().st_size == tmp.stat().st_size and self.intact(final):
            return
        commit(tmp, final)

    def put(self, value: Any) -> ArtifactRef:
        materializer = materializer_for(value)
        with temporary_path(self.root / "tmp", prefix="", suffix=materializer.suffix) as tmp:
            try:
                materializer.save(value, tmp)
            except MaterializerError:
                raise
            except OSError as err:
                raise _write_error(err, self.root) from err
            except Exception as err:
                raise MaterializerError(
                    f"cannot store a {type(value).__name__} with the {materializer.name} materializer: {err}",
                    hint="return a DataFrame, numpy array, estimator or plain values, or register a materializer "
                    "with mloop.register_materializer",
                ) from err
            digest = file_digest(tmp)
            ref = ArtifactRef(digest, materializer.name, _qualname(type(value)), tmp.stat().st_size)
            try:
                self._keep(tmp, self.path(ref))
            except OSError as err:
                raise _write_error(err, self.root) from err
            return ref

    def put_file(self, source: Path) -> ArtifactRef:
        """Store a file as it is (a figure, a log), by its content digest."""
        digest = file_digest(source)
        ref = ArtifactRef(digest, "file", source.suffix, source.stat().st_size)
        final = self.file_path(ref)
        if final.is_dir():
            self.quarantine(final)
        if not (final.exists() and self.intact(final)):
            try:
                with temporary_path(self.root / "tmp", prefix="") as tmp:
                    tmp.write_bytes(source.read_bytes())
                    commit(tmp, final)
            except OSError as err:
                raise _write_error(err, self.root) from err
        return ref

    def file_path(self, ref: ArtifactRef) -> Path:
        return self.root / ref.digest[:2] / ref.digest

    def get(self, ref: ArtifactRef) -> Any:
        path = self.path(ref)
        materializer = _BY_NAME.get(ref.materializer)
        if materializer is None:
            raise MaterializerError(
                f"artifact {ref.digest[:12]} was stored with materializer {ref.materializer!r}, which is not registered",
                hint="import the module that registers it before running",
            )
        try:
            if path.stat().st_size != ref.size:
                raise ValueError(f"{path.stat().st_size} bytes instead of {ref.size}")
            return materializer.load(path)
        except FileNotFoundError as err:
            raise StoreError(
                f"artifact {ref.digest[:12]} ({ref.type_name}) is missing from {self.root}",
                hint="run the pipeline again: the step that made it runs anew",
            ) from err
        except Exception as err:  # a materializer raises what its library raises on damaged bytes
            if self.intact(path):
                raise  # the file is what was written: the value itself does not load (a missing module...)
            moved = self.quarantine(path)
            raise StoreError(
                f"artifact {ref.digest[:12]} ({ref.type_name}) was damaged on disk ({err}); moved to {moved}",
                hint="run the pipeline again: the step that made it runs anew and rewrites it",
            ) from err


def _write_error(err: OSError, root: Path) -> StoreError | OSError:
    """A full disk said as such (the store's folder and what to do), any other OSError as it is."""
    import errno

    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreError(f"the disk holding the store {root} is full ({err.strerror})",
                          hint=f"free space on it (df -h {root}), then run again: finished steps come from the cache")
    return err


def file_digest(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's content, or of a folder's sorted relative names and file digests."""
    if path.is_dir():
        h = hashlib.sha256()
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(str(child.relative_to(path)).encode())
            h.update(file_digest(child).encode())
        return h.hexdigest()
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
