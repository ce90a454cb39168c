"""Deployment targets: ``local`` (a managed server process) today."""
