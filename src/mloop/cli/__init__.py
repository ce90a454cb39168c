"""The ``mloop`` command: one module per command group; each parses its arguments and prints what it gets."""
