"""A CRAN-like repository the tests make themselves (nothing here may depend on CRAN being reachable): small R
source packages written from text (a DESCRIPTION, a NAMESPACE, R code, as `R CMD build` would pack them), and a
PACKAGES index in the layout `tools::write_PACKAGES` writes; older versions go to src/contrib/Archive/NAME/, as
on CRAN. The tests serve it with conda_channel.serve_directory on the engine's bridge address, so build steps reach it
as they would a site's mirror."""

from __future__ import annotations

import gzip
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path



@dataclass(frozen=True)
class RPackage:
    name: str
    version: str
    imports: tuple[str, ...] = ()
    code: str = ""  # R/NAME.R; default a function NAME_version() returning the version

    def description(self) -> str:
        lines = [f"Package: {self.name}", f"Version: {self.version}", f"Title: Test Package {self.name}",
                 "Description: A package the r2env tests build.", "License: MIT", "NeedsCompilation: no"]
        if self.imports:
            lines.append("Imports: " + ", ".join(self.imports))
        return "\n".join(lines) + "\n"

    def tarball(self) -> bytes:
        code = self.code or f'{self.name}_version <- function() "{self.version}"\n'
        files = {"DESCRIPTION": self.description(), "NAMESPACE": 'exportPattern("^[^\\\\.]")\n', f"R/{self.name}.R": code}
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            for path, text in files.items():
                data = text.encode()
                info = tarfile.TarInfo(f"{self.name}/{path}")
                info.size, info.mode, info.mtime = len(data), 0o644, 1704067200
                archive.addfile(info, io.BytesIO(data))
        return buffer.getvalue()


def write_repository(directory: Path, packages: list[RPackage]) -> Path:
    """The newest version of each package in src/contrib (and PACKAGES), older ones in Archive/."""
    contrib = directory / "src" / "contrib"
    contrib.mkdir(parents=True, exist_ok=True)
    newest: dict[str, RPackage] = {}
    for package in packages:
        if package.name not in newest or _key(package.version) > _key(newest[package.name].version):
            newest[package.name] = package
    entries = []
    for package in packages:
        if newest[package.name] is package:
            (contrib / f"{package.name}_{package.version}.tar.gz").write_bytes(package.tarball())
            entries.append(package.description().replace("Title: Test Package " + package.name + "\n", ""))
        else:
            archive = contrib / "Archive" / package.name
            archive.mkdir(parents=True, exist_ok=True)
            (archive / f"{package.name}_{package.version}.tar.gz").write_bytes(package.tarball())
    index = "\n".join(entries)
    (contrib / "PACKAGES").write_text(index)
    (contrib / "PACKAGES.gz").write_bytes(gzip.compress(index.encode(), mtime=0))
    return directory


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.replace("-", ".").split("."))


def example_packages() -> list[RPackage]:
    """hellor needs greetr (an Imports dependency); both have an older version in Archive/."""
    return [
        RPackage("greetr", "0.9.0"),
        RPackage("greetr", "1.0.0"),
        RPackage("hellor", "0.1.0", imports=("greetr",)),
        RPackage("hellor", "0.2.0", imports=("greetr",),
                 code='hellor_version <- function() "0.2.0"\nhello <- function() paste("hello from hellor, greetr", greetr::greetr_version())\n'),
    ]
