"""mloop: from a data scientist's pipeline to a monitored production endpoint, and back.

Public API (everything else is internal)::

    from mloop import step, pipeline, ModelCandidate, log_metric, log_figure
"""

from mloop.errors import MloopError
from mloop.pipeline.artifacts import register_materializer
from mloop.pipeline.context import log_figure, log_file, log_metric, log_metrics
from mloop.pipeline.dsl import Pipeline, Step, pipeline, step
from mloop.registry.candidate import ModelCandidate

__version__ = "0.1.0"

__all__ = [
    "MloopError",
    "ModelCandidate",
    "Pipeline",
    "Step",
    "__version__",
    "log_figure",
    "log_file",
    "log_metric",
    "log_metrics",
    "pipeline",
    "register_materializer",
    "step",
]
