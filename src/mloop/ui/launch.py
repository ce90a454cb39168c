"""The app's process, as ``mloop ui`` starts it: ``python -m mloop.ui.launch run APP [Streamlit's options]``.

Streamlit runs the app's script only when a browser connects, so whatever the pages import would be paid by the
first visitor (MLflow alone ~2 s, its SQL stores ~0.7 s, skops' list of trusted types ~0.5 s). This imports them
first, freezes that heap out of the garbage collector's sight (it lives as long as the process), then hands the
command line to Streamlit. The command turns off Streamlit's full collection after every page run
(``runner.postScriptGC``, 0.3-0.9 s over that heap); Python's own collector still runs.
"""

from __future__ import annotations

import gc
import importlib
import logging
import sys

PRELOAD = ("mlflow", "mlflow.sklearn", "mlflow.models", "mlflow.store.tracking.sqlalchemy_store",
           "mlflow.store.model_registry.sqlalchemy_store", "skops.io", "pandas", "sklearn", "altair",
           "mloop.bundle.loaded", "mloop.registry.fetch", "mloop.registry.queries", "mloop.tracking.queries",
           "mloop.deploy.local", "mloop.monitor.queries", "mloop.ui.predict", "mloop.ui.models", "mloop.ui.runs",
           "mloop.ui.deployments", "mloop.ui.monitoring", "mloop.ui.training")


def quiet_warnings() -> None:
    """The pages predict, score outliers and explain with models fitted on DataFrames, from arrays whose columns the
    app put in the training order itself: scikit-learn's warning about it on every call says nothing here (the
    server filters it the same way)."""
    import warnings

    from mloop.bundle.loaded import FEATURE_NAMES_WARNING

    warnings.filterwarnings("ignore", message=FEATURE_NAMES_WARNING, category=UserWarning)


def preload() -> None:
    # The pages' @st.cache_data functions are checked as they are defined; before Streamlit's runtime exists that
    # check says "No runtime found" once per function (the caches themselves live in the runtime, found per call).
    from streamlit.runtime.caching import cache_data_api

    quiet = logging.getLogger(cache_data_api.__name__)
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        for module in PRELOAD:
            importlib.import_module(module)
    finally:
        quiet.setLevel(level)
    gc.collect()
    gc.freeze()


def main() -> None:
    from streamlit.web.cli import main as streamlit

    quiet_warnings()
    preload()
    sys.argv[0] = "streamlit"
    streamlit()


if __name__ == "__main__":
    main()
