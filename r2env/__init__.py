"""r2env: turn a code repository into a locked, reproducible, runnable environment image."""

__version__ = "0.1.0"
