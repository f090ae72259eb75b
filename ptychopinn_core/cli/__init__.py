"""The ``ptychopinn`` command line: one module per command, loaded on demand."""
