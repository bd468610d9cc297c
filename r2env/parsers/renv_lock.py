"""renv.lock: renv's lock file (JSON; https://rstudio.github.io/renv/articles/lockfile.html). r2env installs its
packages at exactly their versions from the repositories it names; renv itself is not needed in the image."""

from __future__ import annotations

from dataclasses import dataclass

from r2env.documents import Shape, load_json
from r2env.errors import SpecError
from r2env.grammars import R_PACKAGE_NAME, R_PACKAGE_VERSION, URL, excerpt

_HINT = "regenerate it with `renv::snapshot()`"


@dataclass(frozen=True)
class RenvPackage:
    name: str
    version: str
    repository: str  # the URL of the repository it comes from


@dataclass(frozen=True)
class RenvLock:
    path: str
    r_version: str
    repositories: tuple[tuple[str, str], ...]  # (name, URL) as R.Repositories lists them
    packages: tuple[RenvPackage, ...]


def parse_renv_lock(text: str, path: str) -> RenvLock:
    document = Shape(load_json(text, path, SpecError, _HINT), path, hint=_HINT)
    r = document.key("R")
    r_version = r.key("Version").string()
    if not R_PACKAGE_VERSION.match(r_version):
        raise r.key("Version").fail(f"{excerpt(r_version, 40)} is not an R version")
    repositories: dict[str, str] = {}
    for entry in r.key("Repositories", []).list():
        name, url = entry.key("Name").string(), entry.key("URL").string().rstrip("/")
        if not URL.match(url):
            raise entry.key("URL").fail(f"{excerpt(url, 80)} is not an http(s) or file URL")
        repositories[name] = url
    packages = []
    for name, entry in document.key("Packages", {}).items():
        version = entry.key("Version").string()
        if not R_PACKAGE_NAME.match(name):
            raise entry.fail(f"{excerpt(name, 60)} is not an R package name")
        if not R_PACKAGE_VERSION.match(version):
            raise entry.key("Version").fail(f"{excerpt(version, 40)} is not an R package version")
        source = entry.key("Source", "Repository").string()
        if source != "Repository":
            raise SpecError(f"{path}: {name} comes from {excerpt(source, 30)}, and r2env installs renv.lock packages only from "
                            "CRAN-like repositories (Source: Repository) yet",
                            f"install {name} from a repository (CRAN, Posit Package Manager, an r-universe) and run `renv::snapshot()` again")
        repository = entry.key("Repository", "CRAN").string()
        if repository not in repositories:
            raise entry.key("Repository").fail(
                f"{excerpt(repository, 40)} is not one of R.Repositories ({', '.join(repositories) or 'none listed'})")
        packages.append(RenvPackage(name, version, repositories[repository]))
    return RenvLock(path, r_version, tuple(repositories.items()), tuple(packages))
