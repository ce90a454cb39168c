"""Tracking (the only MLflow run code): the client, the runner's tracker, lineage, and the read-side queries."""
