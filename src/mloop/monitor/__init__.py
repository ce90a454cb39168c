"""Monitoring a served model: the metric schema, drift, outliers, the prediction log, feedback, alerts,
the status, the exports and the read-side queries. It does not import the bundle: ``model`` says, as
protocols, what it needs of a model and its training data."""
