"""r: R environments, as repo2docker builds them (runtime.txt `r-…`, install.R, a package DESCRIPTION), plus
renv.lock, which repo2docker does not read, and r2env.lock's exact R packages.

Layout (documented in docs/r.md):
- R from Debian (r-base-core and r-base-dev, so packages can be compiled) where a suite ships the version asked
  for, else from Posit's R builds, as repo2docker; Python stays beside it with the notebook server and whatever
  requirements.txt, setup.py or pyproject.toml declare (repo2docker's R buildpack is a Python buildpack too);
- packages go to R_LIBS_USER=/srv/rlibs (repo2docker's ${APP_BASE}/rlibs), owned by the notebook user; R's
  `repos` option is the CRAN snapshot of runtime.txt's date (Posit Package Manager, or --cran-mirror);
- IRkernel is registered in the server's environment, so JupyterLab lists an R kernel;
- install.R runs as the notebook user before the repository is copied and, if it failed there, once more after
  (repo2docker's order); DESCRIPTION installs the repository as a package after what it needs;
- with r2env.lock, every package the lock lists is downloaded, checked against its sha256 and installed first;
  install.R then finds them installed. renv.lock's packages are installed at exactly their versions."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

from buildpacks import python
from buildpacks.steps import copy_files, ignored_note, pip_install
from r2env.apt_install import APT_GET_INSTALL, apt_install
from r2env.buildpack import Buildpack, Contribution, PlanContext, Role
from r2env.inspect import RepoFacts
from r2env.lock.lockfile import LockedRPackage
from r2env.r.facts import declares_r
from r2env.r.scripts import HELPERS, HELPERS_DIR, write_file
from r2env.r.snapshot import DEFAULT_CRAN_MIRROR, cran_url
from r2env.r.versions import DEBIAN_R, RChoice, choose_r, r_builds_url
from r2env.spec import BuildSecret, Stage, Step

# What only an R image needs to plan loads when one is planned: every command pays at start for what it imports.
if TYPE_CHECKING:
    from r2env.r.rstudio import RStudioSource

R_LIBS_USER = "/srv/rlibs"
DEBIAN_PACKAGES = ("r-base-core", "r-base-dev", "r-cran-irkernel")
_FETCH: tuple[BuildSecret, ...] = ("ca", "proxy")  # R downloads: the CA bundle and proxies, no Python index
_DONE = "/tmp/r2env-install-r.done"
_EXACT_REPOSITORY = "/tmp/r2env-r-repository"


def detect(facts: RepoFacts) -> str | None:
    if not declares_r(facts):
        return None
    found = []
    if facts.runtime is not None and facts.runtime.name == "r":
        found.append(f"{facts.runtime.path} asking for R")
    # repo2docker reads DESCRIPTION only at the root without a binder/ folder (r2env/inspect.py); install.R alone
    # and renv.lock declare R too (repo2docker ignores both without a runtime.txt: docs/r.md says why r2env does not).
    found += [f"{facts.path(name)}" for name in ("install.R", "renv.lock") if facts.has(name)]
    if facts.description is not None:
        found.append(f"DESCRIPTION (the R package {facts.description.package})")
    unused = ("environment.yml", "environment.yaml", "Pipfile", "Pipfile.lock")
    return "found " + ", ".join(found) + ignored_note(facts, unused)


def choice(facts: RepoFacts, default_suite: str, base_fixed: bool) -> RChoice:
    renv = facts.renv_lock
    return choose_r(facts.runtime, (renv.r_version, renv.path) if renv else ("", ""), default_suite, base_fixed)


def suite(facts: RepoFacts, default_suite: str, base_fixed: bool) -> str:
    return choice(facts, default_suite, base_fixed).suite


def _install_r(chosen: RChoice, context: PlanContext) -> tuple[Step, ...]:
    pins = context.lock.apt if context.lock else None
    if chosen.source == "debian":
        return (apt_install(DEBIAN_PACKAGES, "r", f"install R {chosen.version}: {chosen.reason}", pins),)
    url = r_builds_url(context.r_builds_url, chosen)
    hint = (f"r2env: cannot download R {chosen.version} from {url}: Debian ships R "
            f"{' and '.join(DEBIAN_R.values())} only. Ask for one of those in runtime.txt, or set --r-builds-url "
            "to a reachable copy of Posit's R builds (https://github.com/rstudio/r-builds)")
    fetch = f"python3 -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' {shlex.quote(url)} /tmp/r.deb"
    prefix = f"/opt/R/{chosen.version}"
    return (
        apt_install(("python3",), "r", "install what fetches R"),
        Step(kind="run", stage=Stage.SYSTEM, buildpack="r", description=f"install R {chosen.version}: {chosen.reason}",
             script=(f"{{ {fetch} || {{ echo {shlex.quote(hint)} >&2; exit 1; }}; }} && apt-get update -q && "
                     f"{APT_GET_INSTALL} /tmp/r.deb && rm /tmp/r.deb && "
                     f"ln -s {prefix}/bin/R /usr/local/bin/R && ln -s {prefix}/bin/Rscript /usr/local/bin/Rscript && R --version"),
             secrets=_FETCH, caches=("apt",)),
    )


def _setup(chosen: RChoice, context: PlanContext) -> Step:
    """R_LIBS_USER owned by the user, the CRAN snapshot as R's repos option, and r2env's helper scripts."""
    repository = cran_url(context.cran_mirror, chosen)
    profile = f'options(repos = c(CRAN = "{repository}"))'
    writes = " && ".join(write_file(f"{HELPERS_DIR}/{name}", text) for name, text in HELPERS.items())
    uid = context.user_id
    return Step(
        kind="run", stage=Stage.SYSTEM, buildpack="r", description=f"set up R: {R_LIBS_USER}, packages from {repository}",
        script=(f"install -d -o {uid} -g {uid} {R_LIBS_USER} && mkdir -p {HELPERS_DIR} && "
                f"echo {shlex.quote(profile)} >> \"$(R RHOME)/etc/Rprofile.site\" && {writes}"),
    )


def _kernel(chosen: RChoice, context: PlanContext) -> tuple[Step, ...]:
    """IRkernel registered in the server's environment (`jupyter kernelspec` is on PATH there). Debian packages
    IRkernel; with Posit's R it comes from the CRAN snapshot, as in repo2docker."""
    steps: list[Step] = []
    if chosen.source == "posit":
        steps.append(Step(kind="run", stage=Stage.SERVER, buildpack="r", description="install IRkernel from the CRAN snapshot",
                          script=f"Rscript {HELPERS_DIR}/run-install-r.R /dev/stdin <<< 'install.packages(\"IRkernel\")'",
                          user="user", secrets=_FETCH))
    steps.append(Step(kind="run", stage=Stage.SERVER, buildpack="r", description="register the R kernel (IRkernel) with the notebook server",
                      script=f"R --quiet --no-save -e \"IRkernel::installspec(prefix = '{context.env_prefix}')\"", user="user"))
    return tuple(steps)


def _rstudio(chosen: RChoice, source: RStudioSource, context: PlanContext) -> tuple[Step, ...]:
    """RStudio Server from its .deb (its sha256 checked when known: Posit's pinned build, or the lock's), told where
    R packages come from and where the user's library is, and jupyter-rsession-proxy, which starts it at /rstudio.
    With a lock the proxy is one of the locked packages (r2env lock resolves it with the repository's)."""
    deb = "/tmp/rstudio-server.deb"
    unreachable = (f"r2env: cannot download RStudio Server from {source.url}: give --rstudio the URL of a reachable copy "
                   "of an RStudio Server .deb for Ubuntu 22.04 (jammy), or build without --rstudio")
    fetch = f"python3 -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' {shlex.quote(source.url)} {deb}"
    check = ""
    if source.sha256:
        wrong = f"r2env: RStudio Server from {source.url} is not the file with sha256 {source.sha256}: check it, then run r2env lock again"
        check = f" && {{ echo {shlex.quote(f'{source.sha256}  {deb}')} | sha256sum --check --quiet || {{ echo {shlex.quote(wrong)} >&2; exit 1; }}; }}"
    repository = cran_url(context.cran_mirror, chosen)
    which_r = f" && echo rsession-which-r=/opt/R/{chosen.version}/bin/R >> /etc/rstudio/rserver.conf" if chosen.source == "posit" else ""
    steps = [Step(
        kind="run", stage=Stage.SYSTEM, buildpack="r", description=f"install RStudio Server ({source.url})",
        script=(f"{{ {fetch} || {{ echo {shlex.quote(unreachable)} >&2; exit 1; }}; }}{check} && apt-get update -q && "
                f"{APT_GET_INSTALL} {deb} && rm {deb} && mkdir -p /etc/rstudio && "
                f"echo r-cran-repos={shlex.quote(repository)} > /etc/rstudio/rsession.conf{which_r} && "
                # rsession starts R with a clean environment: R_LIBS_USER must be in R's own Renviron.site.
                f"echo R_LIBS_USER={R_LIBS_USER} >> \"$(R RHOME)/etc/Renviron.site\""),
        secrets=_FETCH, caches=("apt",),
    )]
    if context.lock is None:
        from r2env.r.rstudio import RSESSION_PROXY
        steps.append(pip_install(shlex.quote(RSESSION_PROXY), Stage.SERVER, "r", f"install {RSESSION_PROXY} (RStudio at /rstudio)"))
    return tuple(steps)


def _manifest(packages: list[tuple[str, str, str, tuple[str, ...]]]) -> str:
    return "\n".join(" ".join((name, version, sha256, *urls)) for name, version, sha256, urls in packages)


def exact_install(packages: list[tuple[str, str, str, tuple[str, ...]]], description: str) -> Step:
    """Install (name, version, sha256 or "-", URLs) exactly; the list is the step's own text, so the layer cache
    follows it."""
    manifest = "/tmp/r2env-r-packages.txt"
    return Step(
        kind="run", stage=Stage.DEPENDENCIES, buildpack="r", description=description, user="user", secrets=_FETCH,
        script=(f"{write_file(manifest, _manifest(packages))} && python3 {HELPERS_DIR}/install-exact.py {manifest} {_EXACT_REPOSITORY} && "
                f"Rscript {HELPERS_DIR}/install-repository.R {_EXACT_REPOSITORY} {manifest} && rm -rf {manifest} {_EXACT_REPOSITORY}"),
    )


def _locked(packages: tuple[LockedRPackage, ...]) -> list[tuple[str, str, str, tuple[str, ...]]]:
    return [(p.name, p.version, p.sha256, (p.url,)) for p in packages]


def _renv(facts: RepoFacts, mirror: str) -> list[tuple[str, str, str, tuple[str, ...]]]:
    """renv.lock's packages at exactly their versions, from its repositories (or --cran-mirror's)."""
    from r2env.r.locking import renv_candidates
    return [(c.name, c.version, "-", c.urls) for c in renv_candidates(facts, mirror)]


def _install_r_script(facts: RepoFacts, locked: bool) -> tuple[Step, ...]:
    path = shlex.quote(facts.path("install.R"))
    run = ("R2ENV_R_LOCKED=1 " if locked else "") + f"Rscript --no-save --no-restore --no-init-file {HELPERS_DIR}/run-install-r.R {path}"
    again = f"r2env: {facts.path('install.R')} did not finish before the repository was copied: it runs again after it (as in repo2docker)"
    return (
        Step(kind="run", stage=Stage.DEPENDENCIES, buildpack="r", description=f"run {facts.path('install.R')}",
             script=f"{{ {run} && touch {_DONE} || echo {shlex.quote(again)}; }} && rm -rf /tmp/downloaded_packages",
             user="user", secrets=_FETCH, repository_code=True),
        Step(kind="run", stage=Stage.REPO, buildpack="r", description=f"run {facts.path('install.R')} again if it needed the repository",
             script=f"if [ -f {_DONE} ]; then rm {_DONE}; else {run} && rm -rf /tmp/downloaded_packages; fi",
             user="user", secrets=_FETCH, repository_code=True),
    )


def contribute(facts: RepoFacts, context: PlanContext) -> Contribution:
    chosen = choice(facts, context.suite, context.base_fixed)
    # Python first, as repo2docker's R buildpack extends its Python one: the notebook server, requirements.txt.
    python_part = python.contribute(facts, context)
    steps = list(python_part.steps) + list(_install_r(chosen, context)) + [_setup(chosen, context)] + list(_kernel(chosen, context))
    locked_rstudio = context.lock.r.rstudio if context.lock and context.lock.r else None
    from r2env.r.rstudio import rstudio_source
    rstudio = rstudio_source(context.rstudio, *((locked_rstudio.url, locked_rstudio.sha256) if locked_rstudio else ()))
    if rstudio is not None:
        steps += _rstudio(chosen, rstudio, context)
    files = [facts.path(name) for name in ("install.R", "renv.lock") if facts.has(name)]
    steps += copy_files(files, "r")
    r_lock = context.lock.r if context.lock else None
    if r_lock is not None and r_lock.packages:
        steps.append(exact_install(_locked(r_lock.packages), f"install the locked R packages ({len(r_lock.packages)}, sha256 checked)"))
    elif facts.renv_lock is not None and facts.renv_lock.packages:
        mirror = cran_url(context.cran_mirror, chosen) if context.cran_mirror != DEFAULT_CRAN_MIRROR else ""
        steps.append(exact_install(_renv(facts, mirror), f"install {facts.renv_lock.path}'s R packages ({len(facts.renv_lock.packages)}, exact versions)"))
    if facts.has("install.R"):
        steps += _install_r_script(facts, locked=r_lock is not None)
    if facts.description is not None:
        steps.append(Step(kind="run", stage=Stage.REPO, buildpack="r",
                          description=f"install the repository as the R package {facts.description.package} (DESCRIPTION)",
                          script=f"Rscript --no-save --no-restore --no-init-file {HELPERS_DIR}/install-description.R && R CMD INSTALL .",
                          user="user", secrets=_FETCH, repository_code=True))
    env: tuple[tuple[str, str], ...] = (("R_LIBS_USER", R_LIBS_USER),)
    if facts.renv_lock is not None:
        # The packages are in the image's library: renv's project autoloader (.Rprofile) would hide them.
        env += (("RENV_ACTIVATE_PROJECT", "FALSE"),)
    declared = tuple(facts.description.needs) if facts.description else ()
    declared += tuple(f"{p.name}=={p.version}" for p in facts.renv_lock.packages) if facts.renv_lock else ()
    packages = python_part.packages + ((("r", declared),) if declared else ())
    return Contribution(steps=tuple(steps), env=python_part.env + env, packages=packages, build_stages=python_part.build_stages)


BUILDPACK = Buildpack("r", Role.PRIMARY, detect, contribute, suite=suite)
