"""The model registry (MLflow underneath): registration, the promotion gate and its metric table,
aliases, ``models:/`` URIs, and the read-side queries."""
