"""The CRAN snapshot R packages come from: Posit Package Manager's dated snapshots by default, as in repo2docker
(https://packagemanager.posit.co/client/#/repos/cran/setup), or a mirror given with --cran-mirror."""

from __future__ import annotations

from r2env.errors import UsageError
from r2env.r.versions import RChoice

# Posit Package Manager serves Linux binary packages (same file names as source ones) for the Debian releases it
# supports, named by codename, when R's user agent names its version (R's default one does); source packages else.
_BINARY_SUITES = ("bookworm",)
DEFAULT_CRAN_MIRROR = "https://packagemanager.posit.co/cran/{linux}{date}"


def cran_url(template: str, choice: RChoice) -> str:
    """The repository URL for `options(repos = …)`. A --cran-mirror template may use {date} (the snapshot date,
    or "latest") and {suite} (the Debian codename); one without placeholders is used as it is."""
    linux = f"__linux__/{choice.suite}/" if choice.suite in _BINARY_SUITES else ""
    try:
        url = template.format(date=choice.snapshot, suite=choice.suite, linux=linux)
    except (KeyError, IndexError, ValueError) as error:
        raise UsageError(f"--cran-mirror {template!r}: {error} is not a placeholder r2env fills",
                         "use {date} and {suite} only, e.g. https://cran.example.org/{date}") from None
    return url.rstrip("/")
