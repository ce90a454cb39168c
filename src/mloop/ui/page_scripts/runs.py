"""The Runs page; its logic is in mloop.ui.runs."""

from mloop.ui import runs

runs.page()
