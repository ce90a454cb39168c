"""The Models page; its logic is in mloop.ui.models."""

from mloop.ui import models

models.page()
