"""An image whose packages uv installed (issue 13): no uv left in it, and pip works for the user as it did."""

from __future__ import annotations

import docker

from support import EXAMPLES, build_ok, run_in

# A package the user installs at run time with the image's pip, offline: built from source by setuptools, which
# the venv has from Debian's wheel, as `python3 -m venv` gives it.
USER_INSTALL = """
set -e
mkdir -p /tmp/mine/mine && cd /tmp/mine
printf 'from setuptools import setup\\nsetup(name="mine", version="1.0", packages=["mine"])\\n' > setup.py
echo 'ANSWER = 42' > mine/__init__.py
pip install --no-index --no-build-isolation . 2>&1 | tail -n 1
cd / && python -c 'import mine; print("mine", mine.ANSWER)'
pip list --format=freeze
pip check
"""


def test_uv_installs_but_is_not_in_the_image_and_the_users_pip_works(engine: docker.DockerClient) -> None:
    image = "r2env-it/uv-installer"
    build_ok(str(EXAMPLES / "requirements"), "--image-name", image)
    # uv and its cache were mounted for the install steps only (the empty mount points may stay).
    leftovers = run_in(engine, image, ["bash", "-c", "command -v uv; find / -xdev -name uv -type f 2>/dev/null; "
                                       "find /tmp/r2env-uv /tmp/r2env-uv-cache -mindepth 1 2>/dev/null; true"])
    assert leftovers.strip() == ""
    # The environment is a venv (uv venv) with Debian's pip and setuptools; the packages were installed as pip would.
    versions = run_in(engine, image, ["bash", "-c", "pip --version; grep -c '^uv = ' /srv/venv/pyvenv.cfg; "
                                      "cat /srv/venv/lib/python3.11/site-packages/pyparsing-*.dist-info/INSTALLER"])
    assert "pip 23.0.1 from /srv/venv/lib/python3.11/site-packages/pip" in versions and versions.split()[-1] == "uv"
    output = run_in(engine, image, ["bash", "-c", USER_INSTALL])
    assert "Successfully installed mine-1.0" in output and "mine 42" in output
    frozen = set(output.split())
    assert {"pyparsing==3.1.2", "iniconfig==2.0.0", "jupyterlab==4.6.6", "pip==23.0.1", "setuptools==66.1.1", "mine==1.0"} <= frozen
    assert "No broken requirements found." in output
    # Every .pyc file in the environment was compiled at build time, checked-hash (PEP 552 flags 0b11), as pip with
    # SOURCE_DATE_EPOCH writes them: a timestamped one (flags 0), written by some Python start during the build,
    # would differ in every build. (pip's own are not there: uv's seeding leaves them to pip's first run.) -B: this
    # check's own Python start writes none (setuptools' .pth imports _distutils_hack at every start).
    flags = run_in(engine, image, ["python", "-B", "-c", "import collections, glob; print(sorted(collections.Counter("
                                   "int.from_bytes(open(f, 'rb').read()[4:8], 'little') for f in "
                                   "glob.glob('/srv/venv/**/*.pyc', recursive=True)).items()))"])
    assert flags.strip().startswith("[(3, ") and flags.count("(") == 1, flags
