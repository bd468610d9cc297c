"""Runs INSIDE the image's conda build stage (stdlib + py-rattler only; it imports nothing from r2env):
install exactly the locked conda packages into a prefix. No solve: the records are the lock's.

    python conda_installer.py DIR PREFIX     (DIR holds records.json and pkgs/<filename>)

Every package's sha256 (and md5) is checked here because rattler does not check file:// packages itself."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any


def _verify(package: Path, record: dict[str, Any]) -> None:
    data = package.read_bytes()
    for algorithm in ("sha256", "md5"):
        expected = record.get(algorithm)
        if expected and hashlib.new(algorithm, data).hexdigest() != expected:
            actual = hashlib.new(algorithm, data).hexdigest()
            raise SystemExit(f"r2env: {record['fn']} does not match its locked {algorithm} {expected} (the file is {actual})")


async def _install(directory: Path, prefix: str) -> int:
    from rattler import BuildString, PackageRecord, RepoDataRecord, install

    records = json.loads((directory / "records.json").read_text(encoding="utf-8"))
    repodata = []
    for record in records:
        package = directory / "pkgs" / record["fn"]
        _verify(package, record)
        url = package.as_uri()
        package_record = PackageRecord(
            name=record["name"], version=record["version"], build=BuildString(record["build"]), build_number=0,
            subdir=record["subdir"], depends=record["depends"],
            md5=bytes.fromhex(record["md5"]) if record.get("md5") else None, sha256=bytes.fromhex(record["sha256"]),
        )
        repodata.append(RepoDataRecord(package_record, record["fn"], url, (directory / "pkgs").as_uri()))
    # The package cache sits beside the packages and is dropped with the build stage (files are hardlinked from it).
    await install(repodata, target_prefix=prefix, cache_dir=directory / "cache", show_progress=False)
    return len(repodata)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: conda_installer.py DIR PREFIX", file=sys.stderr)
        return 2
    try:
        count = asyncio.run(_install(Path(argv[0]), argv[1]))
    except SystemExit as error:
        print(error, file=sys.stderr)
        return 1
    except Exception as error:  # rattler's own errors: one line, prefixed so r2env shows it as the build error
        print(f"r2env: installing the conda environment failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(f"installed {count} locked conda packages into {argv[1]}")
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    # py-rattler can crash in interpreter finalisation after the work is done; a crashing RUN fails the build.
    os._exit(code)
