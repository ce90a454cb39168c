"""The Monitoring page; its logic is in mloop.ui.monitoring."""

from mloop.ui import monitoring

monitoring.page()
