"""The exceptions mloop raises. Every message says what happened and what to do next."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from typing import Any


class MloopWarning(UserWarning):
    """A warning from mloop itself (the test suite turns these into errors)."""


class ConfigWarning(MloopWarning):
    """A setting mloop accepts that probably does not do what was meant (the CLI prints it as one line)."""


class MloopError(Exception):
    """Root of every error mloop raises on purpose.

    ``hint`` is the next thing to do (a command or a call), printed by the CLI under the message.
    """

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class ConfigError(MloopError, ValueError):
    """``mloop.toml`` or an environment override is missing, malformed or has a wrong value."""


class PipelineError(MloopError):
    """The pipeline cannot be built: a cycle, a missing input, a duplicate or unknown name."""


class ParameterError(PipelineError, ValueError):
    """A parameter override names an unknown step or parameter, or has a value of the wrong type."""


class StepFailed(MloopError):
    """One or more steps raised while the pipeline ran (the pipeline itself was fine: it was built and run)."""

    def __init__(self, message: str, *, hint: str | None = None, failures: dict[str, str] | None = None) -> None:
        super().__init__(message, hint=hint)
        self.failures = failures or {}


class DataError(MloopError, ValueError):
    """An input data file is missing or does not match what the pipeline expects."""


class MaterializerError(MloopError, TypeError):
    """A step output cannot be stored, or a stored artifact cannot be read back."""


class StoreError(MloopError):
    """The project store under ``.mloop/`` is unreadable or was written by another version."""


class TrackingError(MloopError):
    """The tracking server or store cannot be reached or refused a write."""


class RegistryError(MloopError):
    """A model, version or alias does not exist, or registration failed."""


class ModelError(RegistryError):
    """The pipeline's model cannot be registered as it is: it fails to predict on its own training
    rows, or it cannot be serialized. The run is recorded as failed; nothing is registered."""


class ModelSignatureError(ModelError):
    """The model's ``predict`` failed on the training rows while its input signature was inferred."""


class ModelSerializationError(ModelError):
    """The model (or its outlier detector) cannot be saved in a format mloop can load back."""


class DataVersionError(MloopError):
    """A data-versioning (DVC) operation failed: no DVC repository, a missing remote, a version not found."""


class ReproductionDiffers(MloopError):
    """``mloop reproduce``: the reproduced metrics differ from the recorded ones, or a step failed (exit 5)."""

    exit_code = 5


class DeployError(MloopError):
    """A deployment could not be started, changed or stopped; what was serving before still is."""


class ProjectNotFound(ConfigError):
    """No ``mloop.toml`` in this folder or any parent."""


class DriftFound(MloopError):
    """Drift above the threshold a caller set (``mloop monitor report --fail-on-drift``): exit code 3."""

    exit_code = 3


class GateFailed(MloopError):
    """The latest run's candidate did not pass the promotion gate (``mloop models gate``): exit code 4."""

    exit_code = 4


def listed(names: Sequence[Any], most: int = 10) -> str:
    """``names`` for a message: the first ``most``, then "..." if there are more."""
    return ", ".join(map(str, names[:most])) + (", ..." if len(names) > most else "")


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest candidate, or a list of the known names."""
    known = sorted(set(candidates))
    by_lower = {k.lower(): k for k in known}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
    if close:
        return f"did you mean {by_lower[close[0]]!r}?"
    if not known:
        return "there are none"
    return "known: " + ", ".join(repr(k) for k in known)
