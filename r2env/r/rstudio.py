"""RStudio Server in R images, opened at /rstudio through jupyter-rsession-proxy, as repo2docker does, but only when
asked for (`--rstudio`): it is about 600 MB and comes from Posit's download site, which not every site reaches."""

from __future__ import annotations

from dataclasses import dataclass

# Posit's RStudio Server build for Ubuntu 22.04 (jammy), the one for OpenSSL 3, which Debian 12 and 13 have
# (the build repo2docker installs, with its sha256: repo2docker/buildpacks/_r_base.py).
POSIT_RSTUDIO_URL = "https://download2.rstudio.org/server/jammy/amd64/rstudio-server-2026.07.1-147-amd64.deb"
POSIT_RSTUDIO_SHA256 = "118e3fce4cf58ad3bfff1dc6eea3e07f294d51d28fefcc5e1cc559292c0dd06c"
# The Jupyter server extension that starts rserver and proxies /rstudio to it (jupyter-server-proxy).
RSESSION_PROXY = "jupyter-rsession-proxy==2.3.0"


@dataclass(frozen=True)
class RStudioSource:
    url: str
    sha256: str  # "" when not known before `r2env lock` hashes the file


def rstudio_source(option: str, locked_url: str = "", locked_sha256: str = "") -> RStudioSource | None:
    """`option`: "" (no RStudio), "posit" (the pinned build above) or the URL of an RStudio Server .deb. A lock
    that recorded the same file gives its sha256."""
    if not option:
        return None
    url, sha256 = (POSIT_RSTUDIO_URL, POSIT_RSTUDIO_SHA256) if option == "posit" else (option, "")
    if locked_url == url and locked_sha256:
        sha256 = locked_sha256
    return RStudioSource(url, sha256)
