"""A project: its pipeline loaded from its own file, run end to end, scaffolded, and reported on.

``load`` loads the pipeline under a module name unique to the project; ``run`` builds, executes, tracks
and registers; ``scaffold`` writes a new project; ``reports`` answers project-level questions that need
the registry and monitoring together (the drift of a batch or of served traffic).
"""

from mloop.project.load import load_pipeline, module_name_for
from mloop.project.reports import DriftReport, drift_report
from mloop.project.run import ProjectRun, merged_params, run_project
from mloop.project.scaffold import create_project, sample_data

__all__ = ["DriftReport", "ProjectRun", "create_project", "drift_report", "load_pipeline", "merged_params",
           "module_name_for", "run_project", "sample_data"]
