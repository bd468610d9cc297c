"""R for real: the R examples and parity repositories build on the engine against a CRAN-like repository the tests
make (integration/cran_repo.py; nothing depends on CRAN), pass their verify scripts (R's version, the installed
package versions, the R kernel running code over the kernel protocol), lock, and rebuild exactly from the lock."""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Iterator

import docker
import pytest
from ruamel.yaml import YAML

from conda_channel import serve_directory
from cran_repo import example_packages, write_repository
from support import EXAMPLES, ROOT, build_ok, network_gateway, r2env, run_in
from kernels import execute
from test_launch_server import DETACHED, READY, _split

PARITY = ROOT / "integration" / "parity"


@pytest.fixture(scope="module")
def cran(engine: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The repository's URL on the engine's bridge gateway: build steps reach it there, and so does the host."""
    gateway = network_gateway(engine.networks.get("bridge"))
    with serve_directory(write_repository(tmp_path_factory.mktemp("cran"), example_packages()), address=gateway) as url:
        yield url


def test_install_r_example_builds_locks_and_rebuilds_exactly(engine: docker.DockerClient, cran: str, tmp_path: Path) -> None:
    repo = tmp_path / "r-install-r"
    shutil.copytree(EXAMPLES / "r-install-r", repo)
    image = "r2env-it/r-install-r"
    build_ok(str(repo), "--image-name", image, "--cran-mirror", cran)
    assert "all checks passed" in run_in(engine, image, ["./verify"])

    locked = r2env("lock", str(repo), "--cran-mirror", cran)
    assert locked.returncode == 0, locked.stderr
    section = YAML(typ="safe").load((repo / "r2env.lock").read_text())["r"]
    assert (section["version"], section["source"], section["repository"]) == ("4.2.2", "debian", cran)
    assert [(p["name"], p["version"], p["url"]) for p in section["packages"]] == [
        ("greetr", "1.0.0", f"{cran}/src/contrib/greetr_1.0.0.tar.gz"), ("hellor", "0.2.0", f"{cran}/src/contrib/hellor_0.2.0.tar.gz")]
    assert all(len(p["sha256"]) == 64 for p in section["packages"])
    build_ok(str(repo), "--image-name", f"{image}-locked", "--cran-mirror", cran)
    assert "all checks passed" in run_in(engine, f"{image}-locked", ["./verify"])

    (repo / "install.R").write_text('install.packages(c("hellor", "greetr"))\n')
    check = r2env("lock", "--check", str(repo), "--cran-mirror", cran)
    assert check.returncode == 8 and "install.R" in check.stderr


def test_a_locked_build_refuses_a_file_that_changed_in_the_repository(engine: docker.DockerClient, cran: str, tmp_path: Path) -> None:
    repo = tmp_path / "r-install-r"
    shutil.copytree(EXAMPLES / "r-install-r", repo)
    assert r2env("lock", str(repo), "--cran-mirror", cran).returncode == 0
    lock = (repo / "r2env.lock").read_text()
    first = YAML(typ="safe").load(lock)["r"]["packages"][0]["sha256"]
    (repo / "r2env.lock").write_text(lock.replace(first, "a" * 64))
    result = r2env("build", str(repo), "--image-name", "r2env-it/r-tampered", "--cran-mirror", cran)
    assert result.returncode != 0
    assert "greetr 1.0.0" in result.stderr and "not the locked" in result.stderr, result.stderr


@pytest.fixture(scope="module")
def renv_image(engine: docker.DockerClient, cran: str) -> str:
    image = "r2env-it/r-renv"
    build_ok(str(EXAMPLES / "r-renv"), "--image-name", image, "--cran-mirror", cran)
    return image


def test_renv_lock_installs_its_exact_versions_from_the_archive(engine: docker.DockerClient, renv_image: str) -> None:
    assert "all checks passed" in run_in(engine, renv_image, ["./verify"])


@contextlib.contextmanager
def launched(image: str) -> Iterator[tuple[str, str]]:
    """`r2env launch --detach` of an image: the server's base URL and token; stopped afterwards."""
    result = r2env("launch", image, "--detach")
    assert result.returncode == 0, result.stdout + result.stderr
    url, container = READY.search(result.stdout), DETACHED.search(result.stdout)
    assert url and container, result.stdout
    try:
        yield _split(url.group(1))
    finally:
        assert r2env("stop", container.group(1)).returncode == 0


def test_r2env_launch_opens_jupyterlab_with_a_working_r_kernel(engine: docker.DockerClient, renv_image: str) -> None:
    with launched(renv_image) as (base, token):
        with urllib.request.urlopen(f"{base}/api/kernelspecs?token={token}", timeout=10) as response:
            specs = json.load(response)["kernelspecs"]
        assert specs["ir"]["spec"]["language"] == "R" and "python3" in specs
        output = execute(base, token, 'cat(as.character(packageVersion("greetr")), R.version$major, sep = " ")', kernel_name="ir")
        assert output.split() == ["0.9.0", "4"], output


@pytest.mark.parametrize("name", sorted(p.name for p in PARITY.iterdir() if (p / "cran-repository").is_file()))
def test_r_parity_repository_builds_and_verifies(engine: docker.DockerClient, cran: str, name: str) -> None:
    image = f"r2env-it/parity-{name}"
    build_ok(str(PARITY / name), "--image-name", image, "--cran-mirror", cran)
    assert "all checks passed" in run_in(engine, image, ["./verify"])


@pytest.mark.parametrize(("script", "named"), [
    ('install.packages("nosuchpackage")\n', "nosuchpackage"),  # not in the snapshot
    ('x <- 1\nstop("the data URL moved")\n', "the data URL moved"),  # R's own error line
])
def test_an_install_r_that_fails_stops_the_build_with_one_line_naming_it(cran: str, tmp_path: Path, script: str, named: str) -> None:
    (tmp_path / "runtime.txt").write_text("r-4.2-2024-01-02\n")
    (tmp_path / "install.R").write_text(script)
    result = r2env("build", str(tmp_path), "--image-name", "r2env-it/r-missing", "--cran-mirror", cran)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("r2env: error: install.R failed:") and named in last, result.stderr
    assert "Traceback" not in result.stderr


def test_an_r_version_debian_lacks_and_unreachable_r_builds_is_one_sentence(engine: docker.DockerClient, tmp_path: Path) -> None:
    """R 4.3 comes from Posit's R builds, which these machines cannot reach: the build says what to do instead."""
    (tmp_path / "runtime.txt").write_text("r-4.3-2024-01-02\n")
    unreachable = "http://127.0.0.1:9/r-builds/{platform}/r-{version}_1_amd64.deb"
    plan = r2env("plan", str(tmp_path), "--r-builds-url", unreachable)
    assert "install R 4.3.3: runtime.txt asks for R 4.3; no Debian suite ships it: Posit's R build 4.3.3" in plan.stdout, plan.stdout + plan.stderr
    result = r2env("build", str(tmp_path), "--image-name", "r2env-it/r-posit-unreachable", "--r-builds-url", unreachable)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert "cannot download R 4.3.3 from http://127.0.0.1:9/r-builds/debian-12/r-4.3.3_1_amd64.deb" in last, result.stderr
    assert "4.2.2 and 4.5.0" in last and "--r-builds-url" in last and "Traceback" not in result.stderr


RSERVER = """#!/usr/bin/python3
# A stand-in for RStudio Server's rserver (Posit's download site is not reachable here): it answers on the port
# jupyter-rsession-proxy gives it, with what an R session started the way rsession starts R (a clean environment)
# sees: the library path and the CRAN repository RStudio was configured with.
import http.server, subprocess, sys
if "--help" in sys.argv:
    print("rserver (r2env test stand-in) options: --www-port --server-user --auth-none")
    sys.exit(0)
port = int(next(a.split("=", 1)[1] for a in sys.argv if a.startswith("--www-port=")))
library = subprocess.run(["env", "-i", "/usr/bin/Rscript", "-e", "cat(.libPaths()[1])"], capture_output=True, text=True).stdout
repos = open("/etc/rstudio/rsession.conf").read().strip()
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"stand-in RStudio Server: library {library}; {repos}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


def standin_rstudio_deb(directory: Path) -> Path:
    """An RStudio Server .deb stand-in, built with dpkg-deb: rserver where the real package puts it."""
    root = directory / "rstudio-server"
    binary = root / "usr" / "lib" / "rstudio-server" / "bin" / "rserver"
    binary.parent.mkdir(parents=True)
    binary.write_text(RSERVER)
    binary.chmod(0o755)
    (root / "DEBIAN").mkdir()
    (root / "DEBIAN" / "control").write_text(
        "Package: rstudio-server\nVersion: 0.0.1-r2env-test\nArchitecture: all\nDepends: python3\n"
        "Maintainer: r2env tests <tests@r2env.invalid>\nDescription: stand-in for RStudio Server in r2env's tests\n")
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(root), str(directory / "rstudio-server.deb")], check=True, capture_output=True)
    return directory / "rstudio-server.deb"


def test_rstudio_opens_at_slash_rstudio_through_the_locked_proxy(engine: docker.DockerClient, cran: str, tmp_path: Path) -> None:
    repo = tmp_path / "r-renv"
    shutil.copytree(EXAMPLES / "r-renv", repo)
    files = tmp_path / "files"
    files.mkdir()
    deb = standin_rstudio_deb(files)
    gateway = network_gateway(engine.networks.get("bridge"))
    with serve_directory(files, address=gateway) as served:
        url = f"{served}/rstudio-server.deb"
        locked = r2env("lock", str(repo), "--cran-mirror", cran, "--rstudio", url)
        assert locked.returncode == 0, locked.stdout + locked.stderr
        lock = YAML(typ="safe").load((repo / "r2env.lock").read_text())
        assert lock["r"]["rstudio"] == {"url": url, "sha256": hashlib.sha256(deb.read_bytes()).hexdigest()}
        assert "jupyter-rsession-proxy" in [p["name"] for p in lock["python-packages"]["repository"]]
        image = "r2env-it/r-rstudio"
        build_ok(str(repo), "--image-name", image, "--cran-mirror", cran, "--rstudio", url)
    with launched(image) as (base, token):
        with urllib.request.urlopen(f"{base}/rstudio/?token={token}", timeout=60) as response:
            page = response.read().decode()
        assert page == f"stand-in RStudio Server: library /srv/rlibs; r-cran-repos={cran}", page
