"""The Deployments page; its logic is in mloop.ui.deployments."""

from mloop.ui import deployments

deployments.page()
