"""The model bundle shared by the registry (which writes it) and serving and monitoring (which read it)."""
