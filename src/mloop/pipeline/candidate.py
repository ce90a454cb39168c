"""``ModelCandidate``: what a training pipeline returns to have its model registered."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class ModelCandidate:
    """The model a pipeline selected, and what the registry needs to judge and describe it.

    Inside a ``@pipeline`` function the fields are step outputs; ``mloop run`` loads them after the
    run and registers ``model`` as a new version (see ``mloop.registry.register``). Only a
    ``ModelCandidate`` triggers registration: anything else a pipeline returns is just its results.

    - ``model``: the fitted estimator (``predict``; ``predict_proba`` for probabilities).
    - ``train`` / ``test``: DataFrames of features plus the ``target`` column; ``train`` gives the
      signature, input example and reference profile, ``test`` is where the promotion gate scores
      the candidate and the current champion side by side.
    - ``metrics``: the candidate's evaluation metrics (a dict), stored with the version.
    - ``outlier_detector``: an optional fitted detector (``score_samples``) shipped in the bundle.
    """

    model: Any
    train: Any
    test: Any
    target: str = "target"
    metrics: Any = None
    outlier_detector: Any = None
