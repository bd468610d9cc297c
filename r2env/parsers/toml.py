"""TOML loading with errors that name the file, line and column (r2env.documents.load_toml: also bounded in depth)."""

from __future__ import annotations

from r2env.documents import load_toml

__all__ = ["load_toml"]
