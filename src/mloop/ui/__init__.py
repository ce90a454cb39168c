"""The web app of ``mloop ui`` (Streamlit): predictions from a form generated from the served model, models,
runs, deployments, monitoring and the continuous-training history.

A leaf like ``cli``: it reads through the same query functions the command line uses and is imported by
nothing. ``app.py`` is the script Streamlit runs; ``page_scripts/`` holds one short script per page, each calling
the ``page()`` function of the module of the same name here, so every page's logic can be imported and
tested on its own.
"""
