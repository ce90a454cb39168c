"""The version of mloop (one place; the package metadata and the server's /v2 answer read it)."""

__version__ = "0.1.0"
