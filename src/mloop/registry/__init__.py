"""The model registry: candidates, the model bundle, promotion gates and aliases (MLflow underneath)."""
