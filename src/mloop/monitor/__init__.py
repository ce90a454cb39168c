"""Monitoring: the reference profile today; drift, outliers and alerts build on it."""
