"""environment.yml and conda-lock.yml parsing, table-driven: valid text → the exact value; bad text → one
error naming the file (and for YAML, the line and column)."""

from __future__ import annotations

import pytest

from r2env.errors import LockError, SpecError
from r2env.lock.lockfile import LockedPackage
from r2env.parsers.conda_lock import parse_conda_lock
from r2env.parsers.environment import CondaEnvironment, parse_environment

PATH = "binder/environment.yml"

VALID = [
    ("minimal", "dependencies:\n  - numpy\n", CondaEnvironment(PATH, "", (), ("numpy",), (), "")),
    (
        "channels, pins and a pip section",
        "name: demo\nchannels:\n  - conda-forge\n  - nodefaults\ndependencies:\n  - python=3.11\n  - numpy >=1.26,<2\n"
        "  - conda-forge::scipy\n  - pip\n  - pip:\n    - tabulate==0.9.0\n    - -e .\n",
        CondaEnvironment(PATH, "demo", ("conda-forge",), ("python=3.11", "numpy >=1.26,<2", "conda-forge::scipy", "pip"), ("tabulate==0.9.0", "-e ."), "3.11"),
    ),
    ("python without a version", "dependencies:\n  - python\n", CondaEnvironment(PATH, "", (), ("python",), (), "*")),
    ("python range with a build", "dependencies:\n  - python >=3.10 *_cpython\n", CondaEnvironment(PATH, "", (), ("python >=3.10 *_cpython",), (), ">=3.10")),
    ("a number is a name", "dependencies:\n  - 7zip\n", CondaEnvironment(PATH, "", (), ("7zip",), (), "")),
    ("URL channels", "channels: [https://mirror.example/conda-forge, 'file:///srv/channel']\ndependencies: []\n",
     CondaEnvironment(PATH, "", ("https://mirror.example/conda-forge", "file:///srv/channel"), (), (), "")),
    ("unknown top-level keys are conda-lock's or conda's", "dependencies: [x]\nplatforms: [linux-64]\nallow-pypi-requests: false\n",
     CondaEnvironment(PATH, "", (), ("x",), (), "")),
]


@pytest.mark.parametrize(("text", "expected"), [(t, e) for _, t, e in VALID], ids=[name for name, _, _ in VALID])
def test_valid_environment_files_parse_exactly(text: str, expected: CondaEnvironment) -> None:
    assert parse_environment(text, PATH) == expected


INVALID = [
    ("unclosed flow sequence", "dependencies:\n  - numpy\n  - [oops\n", f"{PATH}:4:1: invalid YAML"),
    ("tab indentation", "dependencies:\n\t- numpy\n", f"{PATH}:2:1: invalid YAML"),
    ("not a mapping", "- numpy\n", f"{PATH}: not a conda environment file"),
    ("no dependencies", "name: x\n", f"{PATH}: no `dependencies:` list"),
    ("dependencies not a list", "dependencies: numpy\n", f"{PATH}:1:1: dependencies must be a list"),
    ("channels not a list", "channels: conda-forge\ndependencies: []\n", f"{PATH}:1:1: channels must be a list"),
    ("bad spec", "dependencies:\n  - numpy\n  - 'num py!!'\n", f"{PATH}:3:5: 'num py!!' is not a conda package spec"),
    ("unknown subsection", "dependencies:\n  - conda: [x]\n", f"{PATH}:2:5: unknown subsection 'conda'"),
    ("pip not a list", "dependencies:\n  - pip: tabulate\n", f"{PATH}:2:5: the pip: subsection must be a list"),
    ("pip item not a string", "dependencies:\n  - pip:\n    - {a: b}\n", f"{PATH}:3:7: pip requirement"),
    ("a mapping as a dependency's value", "dependencies:\n  - [a, b]\n", f"{PATH}:2:5: dependency"),
]


@pytest.mark.parametrize(("text", "message"), [(t, m) for _, t, m in INVALID], ids=[name for name, _, _ in INVALID])
def test_invalid_environment_files_name_file_line_and_column(text: str, message: str) -> None:
    with pytest.raises(SpecError) as raised:
        parse_environment(text, PATH)
    assert str(raised.value).startswith(message), str(raised.value)
    assert "\n" not in str(raised.value)


def test_declares_finds_conda_and_pip_names() -> None:
    environment = parse_environment("dependencies:\n  - conda-forge::IPyKernel >=6\n  - pip:\n    - Jupyter_Client[x]==8\n", PATH)
    assert environment.declares("ipykernel") and environment.declares("jupyter-client")
    assert not environment.declares("numpy")


CONDA_LOCK = """\
version: 1
metadata:
  content_hash: {linux-64: abc}
  channels: [{url: 'file:///srv/channel', used_env_vars: []}]
  platforms: [linux-64, osx-arm64]
  sources: [environment.yml]
package:
- name: python
  version: 3.11.2
  manager: conda
  platform: linux-64
  dependencies: {}
  url: file:///srv/channel/linux-64/python-3.11.2-0_fake.tar.bz2
  hash: {md5: 0123456789abcdef0123456789abcdef, sha256: %(sha)s}
  category: main
  optional: false
- name: hello-cli
  version: 1.0.0
  manager: conda
  platform: linux-64
  dependencies: {libgreet: '>=1.0', python: ''}
  url: file:///srv/channel/noarch/hello-cli-1.0.0-0.conda
  hash: {md5: 0123456789abcdef0123456789abcdef, sha256: %(sha)s}
  category: main
  optional: false
- name: hello-cli
  version: 1.0.0
  manager: conda
  platform: osx-arm64
  dependencies: {}
  url: file:///srv/channel/noarch/hello-cli-1.0.0-0.conda
  hash: {md5: 0123456789abcdef0123456789abcdef, sha256: %(sha)s}
  category: main
  optional: false
- name: Tabulate
  version: 0.9.0
  manager: pip
  platform: linux-64
  dependencies: {}
  url: https://files.example/tabulate-0.9.0-py3-none-any.whl
  hash: {sha256: %(sha)s}
  category: main
  optional: false
""" % {"sha": "a" * 64}


def test_conda_lock_yml_gives_the_platforms_packages_and_hashed_pip_pins() -> None:
    lock = parse_conda_lock(CONDA_LOCK, "binder/conda-lock.yml")
    assert [(p.name, p.version, p.build, p.subdir, p.filename) for p in lock.packages] == [
        ("hello-cli", "1.0.0", "0", "noarch", "hello-cli-1.0.0-0.conda"),
        ("python", "3.11.2", "0_fake", "linux-64", "python-3.11.2-0_fake.tar.bz2"),
    ]
    assert lock.packages[0].depends == ("libgreet >=1.0", "python")
    assert lock.pip == (LockedPackage("tabulate", "0.9.0", ("sha256:" + "a" * 64,)),)
    assert lock.python_version == "3.11" and lock.channels == ("file:///srv/channel",)


@pytest.mark.parametrize(("change", "message"), [
    (("sha256: " + "a" * 64 + "}\n  category: main\n  optional: false\n- name: hello-cli", "sha256: ''}\n  category: main\n  optional: false\n- name: hello-cli"),
     "binder/conda-lock.yml: package[0] (python) has no sha256 hash"),
    (("platforms: [linux-64, osx-arm64]", "platforms: [osx-arm64]"), "binder/conda-lock.yml: not locked for linux-64"),
    (("version: 1\n", "version: 2\n"), "binder/conda-lock.yml: not a conda-lock file of version 1"),
    (("manager: pip", "manager: cargo"), "binder/conda-lock.yml: package[3] (Tabulate) has unknown manager 'cargo'"),
    (("python-3.11.2-0_fake.tar.bz2", "python.zip"), "binder/conda-lock.yml: package[0] (python) has no conda package URL"),
])
def test_a_broken_conda_lock_yml_is_a_lock_error_naming_the_entry(change: tuple[str, str], message: str) -> None:
    assert change[0] in CONDA_LOCK
    with pytest.raises(LockError) as raised:
        parse_conda_lock(CONDA_LOCK.replace(*change, 1), "binder/conda-lock.yml")
    assert str(raised.value).startswith(message), str(raised.value)
