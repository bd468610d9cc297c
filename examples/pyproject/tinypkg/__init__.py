"""Tiny example package: reads TOML with the pinned tomli dependency."""

import tomli

__version__ = "0.3.1"


def project_name(toml_text: str) -> str:
    return tomli.loads(toml_text)["project"]["name"]
