"""environment.yml (conda's environment file): channels, conda match specs, a `pip:` subsection.

Errors name the file, line and column (ruamel.yaml keeps node positions), so a user can jump to the fault."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from packaging.utils import canonicalize_name
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from r2env.documents import PositionedList, PositionedMap, load_positioned_yaml
from r2env.errors import SpecError

DEFAULT_CHANNELS = ("conda-forge",)

# A conda match spec as people write them in environment.yml: [channel::]name[ version[ build]], e.g.
# `python=3.11`, `numpy >=1.26,<2`, `conda-forge::scipy`, `libblas=*=*mkl` (https://docs.conda.io/projects/conda/en/latest/user-guide/concepts/pkg-specs.html).
# Each run of spaces has one place to go (the operator's \s* only after an operator): the former `\s*(?:op)?\s*`
# tried every split of a long run of spaces, quadratic in its length (issue 17: 100,000 spaces).
_MATCH_SPEC = re.compile(
    r"^(?:[A-Za-z0-9_./:-]+::)?(?P<name>[A-Za-z0-9_][A-Za-z0-9_.-]*)(?:\[[^\]]*\])?"
    r"(?:\s*(?P<version>(?:(?:[=<>!~]=?|==)\s*)?[0-9*][A-Za-z0-9_.*+!=<>,|~-]*)(?:\s+[A-Za-z0-9_.*+=-]+)?)?$"
)


@dataclass(frozen=True)
class CondaEnvironment:
    path: str
    name: str
    channels: tuple[str, ...]  # as declared ("nodefaults" dropped); empty means the default channels
    dependencies: tuple[str, ...]  # conda match specs, as written
    pip: tuple[str, ...]  # the `pip:` subsection's requirement lines
    python: str  # the python spec's version part ("3.11", ">=3.10"), "*" when unversioned, "" when absent
    index_url: str = ""  # for an environment r2env writes itself: the simple index conda-lock resolves `pip:` from

    @property
    def synthesized(self) -> bool:
        """Written by r2env (an old Python from runtime.txt), not read from an environment.yml."""
        return not self.path.endswith((".yml", ".yaml"))

    def to_yaml(self) -> str:
        """The environment as conda-lock reads it (for one r2env writes). `pip-repositories` names a simple index,
        which every index serves, instead of PyPI's JSON API, which proxies and mirrors often do not."""
        lines = ["channels:", *(f"  - {channel}" for channel in self.channels or DEFAULT_CHANNELS), "dependencies:"]
        lines += [f"  - {spec}" for spec in self.dependencies]
        if self.pip:
            lines += ["  - pip:", *(f"      - {json.dumps(line)}" for line in self.pip)]
            lines += ["pip-repositories:", f"  - {json.dumps(self.index_url or 'https://pypi.org/simple')}", "allow-pypi-requests: false"]
        return "\n".join(lines) + "\n"

    @property
    def uses_r(self) -> bool:
        """repo2docker's rule: a conda package named r-… means the environment is for R too (r-base, r-ggplot2…)."""
        return any(_spec_name(spec).startswith("r-") for spec in self.dependencies)

    @property
    def added_for_r(self) -> tuple[str, ...]:
        """What r2env adds to an R environment, as repo2docker does: IRkernel, so JupyterLab gets an R kernel.
        (repo2docker adds r-devtools too; r2env does not: it is large and an install.R-era tool.)"""
        return ("r-irkernel",) if self.uses_r and not self.declares("r-irkernel") else ()

    def declares(self, name: str) -> bool:
        """Whether the environment asks for a package, as a conda spec or a pip requirement."""
        names = {_spec_name(spec) for spec in self.dependencies}
        names |= {re.split(r"[\s\[=<>!~;@]", line.strip(), maxsplit=1)[0] for line in self.pip}
        # conda-forge writes jupyter_core where PyPI says jupyter-core: compare names as PEP 503 does.
        return canonicalize_name(name) in {canonicalize_name(n) for n in names if n}


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _excerpt(value: Any) -> str:
    """A bad value as errors show it: repr, cut to a line's worth (a 100,000-character value stays out of the terminal)."""
    shown = repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def _spec_name(spec: str) -> str:
    match = _MATCH_SPEC.match(spec.strip())
    return match.group("name").lower() if match else ""


def _where(path: str, node: Any, key: Any) -> str:
    """file:line:column of an item in a mapping or sequence (1-based, like editors)."""
    try:
        line, column = node.positions[key]
    except (AttributeError, KeyError, IndexError, TypeError):
        return path
    return f"{path}:{line + 1}:{column + 1}"


def _fail(where: str, problem: str, fix: str) -> SpecError:
    return SpecError(f"{where}: {problem}", fix)


def _strings(node: Any, path: str, parent: Any, key: Any, what: str) -> PositionedList:
    if not isinstance(node, PositionedList):
        raise _fail(_where(path, parent, key), f"{what} must be a list", f"write {what} as a YAML list of strings (`- item`)")
    return node


def _load(text: str, path: str) -> Any:
    try:
        return load_positioned_yaml(text)
    except MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else path
        problem = (error.problem or error.context or "cannot parse").strip()
        raise _fail(where, f"invalid YAML: {problem}", "fix the syntax at that line and column") from None
    except YAMLError as error:
        raise _fail(path, f"invalid YAML: {error}", "fix the syntax") from None


def parse_environment(text: str, path: str) -> CondaEnvironment:
    data = _load(text, path)
    if not isinstance(data, PositionedMap):
        raise _fail(path, "not a conda environment file (expected a mapping with `dependencies:`)", "see conda's environment.yml format")
    name = data.get("name") or ""
    if not isinstance(name, (str, int, float)) or isinstance(name, bool):
        raise _fail(_where(path, data, "name"), "name must be a string", "write e.g. `name: analysis`")
    channels: list[str] = []
    if data.get("channels") is not None:
        for index, channel in enumerate(_strings(data["channels"], path, data, "channels", "channels")):
            if not isinstance(channel, str) or not channel.strip() or _CONTROL.search(channel.strip()):
                raise _fail(_where(path, data["channels"], index), f"channel {_excerpt(channel)} is not a name or URL", "write a channel name (conda-forge) or URL")
            if channel.strip() != "nodefaults":  # conda's marker for "not the default channels": r2env never adds them
                channels.append(channel.strip())
    if data.get("dependencies") is None:
        raise _fail(path, "no `dependencies:` list", "list the packages the environment needs under `dependencies:`")
    dependencies = _strings(data["dependencies"], path, data, "dependencies", "dependencies")
    specs: list[str] = []
    pip: list[str] = []
    for index, item in enumerate(dependencies):
        where = _where(path, dependencies, index)
        if isinstance(item, PositionedMap):
            if list(item) != ["pip"]:
                raise _fail(where, f"unknown subsection {', '.join(map(str, item))!r}", "only a `pip:` subsection may appear in dependencies")
            for pip_index, line in enumerate(_strings(item["pip"], path, item, "pip", "the pip: subsection")):
                if not isinstance(line, str) or not line.strip() or _CONTROL.search(line.strip()):
                    raise _fail(_where(path, item["pip"], pip_index), f"pip requirement {_excerpt(line)} is not a one-line string",
                                "write one requirement per item, e.g. `- tabulate==0.9.0`")
                pip.append(line.strip())
            continue
        if not isinstance(item, (str, int, float)) or isinstance(item, bool):
            raise _fail(where, f"dependency {_excerpt(item)} is not a package spec", "write a conda spec such as `numpy>=1.26`")
        spec = str(item).strip()
        if not _MATCH_SPEC.match(spec):
            raise _fail(where, f"{_excerpt(spec)} is not a conda package spec", "write NAME, NAME=VERSION or NAME>=VERSION (conda match spec syntax)")
        specs.append(spec)
    python = ""
    for spec in specs:
        match = _MATCH_SPEC.match(spec)
        if match and match.group("name").lower() == "python":
            python = (match.group("version") or "*").lstrip("=").strip() or "*"
    return CondaEnvironment(path, str(name), tuple(channels), tuple(specs), tuple(pip), python)
