"""The Continuous training page; its logic is in mloop.ui.training."""

from mloop.ui import training

training.page()
