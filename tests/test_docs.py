"""The documentation stays true: its r2env commands parse (and the plan/dockerfile ones run), its option
and exit-code tables match the code, its links resolve, the README's test command is the one CI runs, and
the daemon's page names only routes, fields and options `r2env serve` really has."""

from __future__ import annotations

import argparse
import asyncio
import inspect as source_code
import json
import posixpath
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from r2env import errors
from buildpacks import load_buildpacks
from r2env.buildpack import ENTRY_POINT_GROUP, Buildpack
from r2env.cli import EXIT_INTERRUPTED, _parser, main
from r2env.config import cli_traits
from r2env.inspect import inspect
from r2env.plan import plan
from r2env.repo import DiskRepo
from r2env.select import select
from r2env.spec import Stage

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
MARKDOWN = [README, *DOCS]
CONFIGURATION = ROOT / "docs" / "configuration.md"
USER_GUIDE = ROOT / "docs" / "user-guide.md"
SERVE = ROOT / "docs" / "serve.md"

SHELL_LANGUAGES = {"", "bash", "sh", "shell", "console"}
UNIT_LANGUAGES = {"ini", "systemd"}  # systemd units: their ExecStart= lines are commands too
SEPARATORS = {"&&", "||", "|", ";", "&", "(", ")"}
PLACEHOLDER = re.compile(r"^[A-Z][A-Z_]{2,}$|[<>…]|\.\.\.")
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence
    language: str
    text: str


@dataclass(frozen=True)
class Command:
    path: Path
    line: int
    words: tuple[str, ...]  # starts with "r2env"

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}: {shlex.join(self.words)}"


def fenced_blocks(path: Path) -> list[Block]:
    blocks: list[Block] = []
    fence = ""
    language = ""
    start = 0
    body: list[str] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = line.strip()
        if not fence:
            match = re.match(r"^(`{3,}|~{3,})\s*([\w+-]*)", stripped)
            if match:
                fence, language, start, body = match.group(1), match.group(2).lower(), number, []
        elif stripped.startswith(fence) and not stripped[len(fence):].strip():
            blocks.append(Block(path, start, language, "\n".join(body)))
            fence = ""
        else:
            body.append(line)
    assert not fence, f"{path.relative_to(ROOT)}:{start}: unclosed code fence"
    return blocks


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Join backslash continuations; strip a leading `$ ` prompt."""
    lines: list[tuple[int, str]] = []
    pending, first = "", 0
    for offset, raw in enumerate(text.splitlines(), start=1):
        if not pending:
            first = offset
            raw = re.sub(r"^\s*\$\s+", "", raw)
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        lines.append((first, pending + raw))
        pending = ""
    if pending:
        lines.append((first, pending))
    return lines


def _shell_words(line: str) -> list[str]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True  # keep words like URLs whole; operators are still split off
    return list(lexer)


def _without_environment(words: list[str]) -> list[str]:
    """Drop `VAR=value` prefixes and an `env [-u NAME]... [VAR=value]...` wrapper."""
    words = list(words)
    if words and words[0] == "env":
        words.pop(0)
        while words and (words[0].startswith("-") or ENV_ASSIGNMENT.match(words[0])):
            option = words.pop(0)
            if option in ("-u", "--unset") and words:
                words.pop(0)
    while words and ENV_ASSIGNMENT.match(words[0]):
        words.pop(0)
    return words


def _unit_commands(block: Block) -> list[Command]:
    """`ExecStart=/usr/local/bin/r2env …` in a systemd unit, as the command `r2env …`."""
    found: list[Command] = []
    for offset, line in _logical_lines(block.text):
        key, _, value = line.strip().partition("=")
        words = shlex.split(value) if key.strip() in ("ExecStart", "ExecStartPre", "ExecStop") else []
        if words and posixpath.basename(words[0].lstrip("-@:+!")) == "r2env":
            found.append(Command(block.path, block.line + offset, ("r2env", *words[1:])))
    return found


def r2env_commands(path: Path) -> list[Command]:
    """Every `r2env …` command in the file's shell code blocks, also after `&&`, `|`, `;` or VAR=value, and in
    the ExecStart= lines of its systemd units."""
    found: list[Command] = []
    for block in fenced_blocks(path):
        if block.language in UNIT_LANGUAGES:
            found.extend(_unit_commands(block))
        if block.language not in SHELL_LANGUAGES:
            continue
        for offset, line in _logical_lines(block.text):
            if "r2env" not in line:
                continue
            try:
                words = _shell_words(line)
            except ValueError:
                continue  # not shell (e.g. sample output with an apostrophe)
            segment: list[str] = []
            for word in [*words, ";"]:
                if word in SEPARATORS:
                    segment = _without_environment(segment)
                    if segment and segment[0] == "r2env":
                        found.append(Command(path, block.line + offset, tuple(segment)))
                    segment = []
                else:
                    segment.append(word)
    return found


COMMANDS = [command for path in MARKDOWN for command in r2env_commands(path)]
RUNNABLE = [
    command
    for command in COMMANDS
    if len(command.words) > 1
    and command.words[1] in ("plan", "dockerfile")
    and any(word.startswith("examples/") for word in command.words)
    and not {"--help", "-h"} & set(command.words)
]


def test_the_docs_show_r2env_commands() -> None:
    documented = {path.name for path in (c.path for c in COMMANDS)}
    assert {"README.md", "index.md", "user-guide.md", "configuration.md", "serve.md"} <= documented
    assert len(RUNNABLE) >= 5
    serving = [c for c in COMMANDS if "serve" in c.words]
    assert {"README.md", "serve.md"} <= {c.path.name for c in serving}
    assert any(c.words[:3] == ("r2env", "--config", "/etc/r2env/r2env_config.py") for c in serving), "the systemd unit's ExecStart"


@pytest.mark.parametrize("command", COMMANDS, ids=str)
def test_documented_command_is_concrete_and_parses(command: Command, capsys: pytest.CaptureFixture[str]) -> None:
    placeholders = [word for word in command.words if PLACEHOLDER.search(word)]
    assert not placeholders, f"{command}: write a concrete value instead of {placeholders}"
    arguments = list(command.words[1:])
    if "--" in arguments:  # `r2env launch SOURCE -- COMMAND`: the command is not r2env's to parse
        assert arguments[0] == "launch", f"{command}: only launch takes a command after --"
        arguments = arguments[: arguments.index("--")]
    if {"--help", "-h", "--version"} & set(arguments):
        with pytest.raises(SystemExit) as exited:
            _parser().parse_args(arguments)
        assert exited.value.code == 0, f"{command}: {capsys.readouterr().err}"
        return
    try:
        _parser().parse_args(arguments)
    except SystemExit as exited:
        pytest.fail(f"{command}: the CLI rejects it (exit {exited.code}): {capsys.readouterr().err.strip()}")


@pytest.mark.parametrize("command", RUNNABLE, ids=str)
def test_documented_plan_and_dockerfile_commands_run(
    command: Command, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./r2env_config.py from wherever pytest runs
    arguments = [str(ROOT / word) if word.startswith("examples/") else word for word in command.words[1:]]
    code = main(arguments)
    captured = capsys.readouterr()
    assert code == 0, f"{command}: exit {code}: {captured.err.strip()}"
    assert captured.out.strip()


# --- options and exit codes ------------------------------------------------------------------------


def _section(path: Path, heading: str) -> str:
    text = path.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, f"{path.relative_to(ROOT)} has no '## {heading}' section"
    return match.group(1)


def _subcommand(name: str) -> argparse.ArgumentParser:
    commands = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser = commands.choices[name]
    assert isinstance(parser, argparse.ArgumentParser)
    return parser


def _long_flags(parser: argparse.ArgumentParser) -> set[str]:
    # --config names the file the options come from; configuration.md documents it beside the table.
    # A hidden flag (build's -e/--env, which only says to use launch) is not in --help.
    return {flag for action in parser._actions for flag in action.option_strings
            if flag.startswith("--") and action.help is not argparse.SUPPRESS} - {"--help", "--config"}


def _documented_options() -> dict[str, str]:
    """{flag: config trait name} from the table in configuration.md's Options section."""
    rows = re.findall(r"^\|\s*`(--[a-z][a-z-]*)`\s*\|\s*`c\.R2env\.(\w+)`", _section(CONFIGURATION, "Options"), re.MULTILINE)
    return dict(rows)


def test_configuration_lists_exactly_the_build_options() -> None:
    documented = _documented_options()
    flags = _long_flags(_subcommand("build"))
    assert sorted(set(documented) - flags) == [], "documented in docs/configuration.md but not in `r2env build --help`"
    assert sorted(flags - set(documented)) == [], "in `r2env build --help` but missing from docs/configuration.md's options table"


def test_launch_page_lists_exactly_the_launch_only_options() -> None:
    from r2env.config import LAUNCH_TRAITS

    rows = re.findall(r"^\| `(--[\w-]+)` \| `c\.R2env\.(\w+)` \|", _section(ROOT / "docs" / "launch.md", "Mounts, environment and limits"), re.MULTILINE)
    assert sorted(rows) == sorted((f"--{name.replace('_', '-')}", name) for name in LAUNCH_TRAITS)
    launch, build = _long_flags(_subcommand("launch")), _long_flags(_subcommand("build"))
    assert {flag for flag, _ in rows} == launch - build


def test_configuration_names_the_config_file_trait_of_each_option() -> None:
    traits = cli_traits()
    for flag, trait in _documented_options().items():
        assert flag.removeprefix("--") in traits, flag
        assert trait == flag.removeprefix("--").replace("-", "_"), f"{flag} is c.R2env.{flag[2:].replace('-', '_')}"


def test_exit_code_table_matches_the_error_classes() -> None:
    rows = re.findall(r"^\|\s*(\d+)\s*\|\s*(?:`(\w+)`)?\s*\|", _section(CONFIGURATION, "Exit codes"), re.MULTILINE)
    documented = {name: int(code) for code, name in rows if name}
    classes = {
        name: value.exit_code
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, errors.R2envError)
    }
    assert documented == classes
    codes = {int(code) for code, _ in rows}
    assert {0, EXIT_INTERRUPTED} <= codes
    assert codes == {0, EXIT_INTERRUPTED, *classes.values()}


# --- links -------------------------------------------------------------------------------------------


def _without_fences(text: str) -> str:
    return re.sub(r"^(`{3,}|~{3,}).*?^\1\s*$", "", text, flags=re.MULTILINE | re.DOTALL)


def _without_code(text: str) -> str:
    return re.sub(r"`[^`\n]*`", "", _without_fences(text))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    anchors: set[str] = set()
    for line in _without_fences(path.read_text(encoding="utf-8")).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            slug = base = _slug(match.group(1))
            count = 0
            while slug in anchors:
                count += 1
                slug = f"{base}-{count}"
            anchors.add(slug)
    return anchors


LINKS = [
    (path, target)
    for path in MARKDOWN
    for target in re.findall(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", _without_code(path.read_text(encoding="utf-8")))
    if not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE)
]


def test_the_docs_link_to_each_other() -> None:
    targets = {(path.name, target.split("#")[0]) for path, target in LINKS}
    assert ("README.md", "docs/user-guide.md") in targets
    assert ("index.md", "user-guide.md") in targets and ("index.md", "configuration.md") in targets


@pytest.mark.parametrize(("path", "target"), LINKS, ids=lambda value: value if isinstance(value, str) else value.name)
def test_relative_link_points_to_an_existing_file(path: Path, target: str) -> None:
    file_part, _, anchor = target.partition("#")
    destination = (path.parent / file_part).resolve() if file_part else path
    assert destination.exists(), f"{path.relative_to(ROOT)}: link to {target} points to nothing"
    if anchor and destination.suffix == ".md":
        assert anchor in _anchors(destination), f"{path.relative_to(ROOT)}: no heading for #{anchor} in {destination.name}"


# --- README and CI -----------------------------------------------------------------------------------


CI_RUN = ROOT / ".ci" / "run"


def _readme_blocks(heading: str) -> list[Block]:
    section = _section(README, heading)
    return [b for b in fenced_blocks(README) if b.language in SHELL_LANGUAGES and b.text in section]


REDIRECTIONS = {"<", ">", ">>", ">&", "<&", "&>", ">|"}
KEYWORDS = {"if", "then", "elif", "else", "while", "until", "do", "!"}  # before a command, not part of it


def _commands(text: str) -> list[list[str]]:
    """The simple commands of shell text, split at `&&`, `||`, `|`, `;`, `&` and parentheses, without comments,
    redirections (`2>&1` and `>FILE` do not change what runs) and the keywords before them (`if !`, `then`, `do`)."""
    commands: list[list[str]] = []
    for _, line in _logical_lines(text):
        segment: list[str] = []
        words = iter([*_shell_words(re.sub(r"(^|\s)#.*", "", line)), ";"])
        for word in words:
            if word in REDIRECTIONS:
                next(words)  # its target
                if segment and segment[-1].isdigit():
                    segment.pop()  # the descriptor before it, as in 2>&1
            elif word in SEPARATORS or not word.strip("&|;()"):  # also `&))`: shlex keeps runs of operators together
                if segment:
                    commands.append(segment)
                segment = []
            elif segment or word not in KEYWORDS:
                segment.append(word)
    return commands


def _ci_commands() -> list[list[str]]:
    return _commands(CI_RUN.read_text(encoding="utf-8"))


def _ci_packages() -> list[str]:
    match = re.search(r"^for package in ([^;]+); do$", CI_RUN.read_text(encoding="utf-8"), re.MULTILINE)
    assert match, ".ci/run: no `for package in …; do` line naming the Debian packages it installs"
    return match.group(1).split()


def _quiet(words: list[str]) -> list[str]:
    return [word for word in words if word not in ("-q", "-qq")]


def test_readme_test_command_is_the_one_ci_runs() -> None:
    """The README's one command for a fresh machine is .ci/run, its prose names what .ci/run installs and requires, and
    each convenience command is one .ci/run runs (the fast suite: CI's pytest command with fewer of its paths)."""
    first, *conveniences = _readme_blocks("Running the tests")
    assert [" ".join(words) for words in _commands(first.text)] == ["bash .ci/run"]
    assert CI_RUN.read_text(encoding="utf-8").startswith("#!/usr/bin/env bash\n")
    section = _section(README, "Running the tests")
    named = set(re.findall(r"`([\w.-]+)`", section))
    assert sorted(set(_ci_packages()) - named) == [], "packages .ci/run installs that the README does not name"
    required = re.findall(r"^export (R2ENV_REQUIRE_\w+)=1$", CI_RUN.read_text(encoding="utf-8"), re.MULTILINE)
    assert sorted(required) == ["R2ENV_REQUIRE_BROWSER", "R2ENV_REQUIRE_ENGINE"]
    assert all(f"`{name}=1`" in section for name in required)

    ci = _ci_commands()
    ci_pytest = [words for words in ci if "pytest" in words]
    assert [" ".join(words) for words in ci_pytest] == ["python3 -m pytest tests integration"]
    (ci_paths,) = [words[3:] for words in ci_pytest]
    readme = [words for block in conveniences for words in _commands(block.text)]
    assert ["python3", "-m", "pytest", *ci_paths] in readme, "the README shows the command CI runs"
    assert ["python3", "-m", "pytest", "tests"] in readme, "the README shows the fast suite"
    for words in readme:
        if words[:3] == ["python3", "-m", "pytest"]:
            assert words[3:] and set(words[3:]) <= set(ci_paths), f"{shlex.join(words)}: not a part of what CI runs"
        else:
            assert _quiet(words) in [_quiet(command) for command in ci], f"{shlex.join(words)}: .ci/run does not run it"


def test_readme_fresh_machine_commands_are_the_ones_ci_runs() -> None:
    """Each command of "Try it on a fresh machine" has its counterpart in .ci/run (or, for the example build, in the
    integration tests .ci/run runs), so the first thing a new user types is what CI proves works."""
    block = _readme_blocks("Try it on a fresh machine")[0]
    ci = _ci_commands()
    seen: list[str] = []
    for words in _commands(block.text):
        match words:
            case ["apt-get", "update"]:
                assert ["apt-get", "update"] in [_quiet(command) for command in ci]
            case ["apt-get", "install", "-y", *packages]:
                assert packages and sorted(set(packages) - set(_ci_packages())) == [], f"{packages}: .ci/run installs {_ci_packages()}"
            case ["pgrep", "-x", "dockerd"] | ["sleep", _]:
                # CI also checks for a running daemon; it waits for `docker info` to answer instead of sleeping.
                assert ["pgrep", "-x", "dockerd"] in ci
            case ["setsid", "dockerd"]:
                started = re.search(r"setsid dockerd [^&)]*", block.text)
                assert started and words in ci and started.group(0) in CI_RUN.read_text(encoding="utf-8"), \
                    ".ci/run starts dockerd otherwise"
            case ["pip", "install", "."]:
                # The same project; CI adds the test extras and installs it editable.
                assert ["python3", "-m", "pip", "install", "-e", ".[test]"] in [_quiet(command) for command in ci]
            case ["r2env", "build", example, "--image-name", _]:
                # integration/test_examples.py builds every example with a verify script and runs it in the image.
                assert example.startswith("examples/") and (ROOT / example / "verify").is_file()
                assert 'run_in(engine, image, ["./verify"])' in (ROOT / "integration" / "test_examples.py").read_text(encoding="utf-8")
            case ["docker", "run", "--rm", _, "./verify"]:
                pass  # the verify step of the build above
            case _:
                pytest.fail(f"README.md: `{shlex.join(words)}` has no counterpart in .ci/run")
        seen.append(words[0])
    assert seen[:2] == ["apt-get", "apt-get"] and {"setsid", "pip", "r2env", "docker"} <= set(seen)


# --- the plugin example in the user guide -------------------------------------------------------------


def test_user_guide_buildpack_example_works() -> None:
    code = next(b.text for b in fenced_blocks(USER_GUIDE) if b.language == "python" and "BUILDPACK = Buildpack(" in b.text)
    namespace: dict[str, object] = {}
    # Running the documented example is the point: it is our own file, and it must keep working.
    exec(compile(code, f"{USER_GUIDE.name}:python example", "exec"), namespace)  # noqa: S102
    buildpack = namespace["BUILDPACK"]
    assert isinstance(buildpack, Buildpack)

    registration = next(b.text for b in fenced_blocks(USER_GUIDE) if b.language == "toml" and "entry-points" in b.text)
    assert f'[project.entry-points."{ENTRY_POINT_GROUP}"]' in registration
    assert re.search(rf"^{re.escape(buildpack.name)} = \"[\w.]+:BUILDPACK\"$", registration, re.MULTILINE)

    facts = inspect(DiskRepo(ROOT / "examples" / "requirements"))
    selection = select(facts, {**load_buildpacks(), buildpack.name: buildpack})
    assert buildpack in selection.addons
    spec = plan(facts, selection)
    stages = [(step.buildpack, step.stage) for step in spec.steps]
    assert (buildpack.name, Stage.SERVER) in stages
    assert stages.index((buildpack.name, Stage.SERVER)) == stages.index(("python", Stage.SERVER)) + 1


# --- r2env serve: options, routes and the curl examples in docs/serve.md --------------------------------


def _shown_default(value: object) -> str:
    """A trait's default as the options table writes it."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, tuple)):
        return "`" + ",".join(str(item) for item in value) + "`" if value else "none"
    if isinstance(value, float):
        return f"`{value:g}`"
    return f"`{value}`"


def test_serve_page_lists_exactly_the_serve_options_with_their_defaults() -> None:
    from r2env.serve.config import Serve

    rows = re.findall(r"^\| (`--[\w-]+`|\(configuration only\)) \| (`c\.Serve\.\w+`|\(command line only\)) \| ([^|]*?) \|",
                      _section(SERVE, "Options"), re.MULTILINE)
    flags = {flag.strip("`") for flag, _, _ in rows if flag.startswith("`")}
    assert sorted(flags - _long_flags(_subcommand("serve"))) == [], "in docs/serve.md but not in `r2env serve --help`"
    assert sorted(_long_flags(_subcommand("serve")) - flags) == [], "in `r2env serve --help` but missing from docs/serve.md"
    traits = Serve.class_traits(config=True)
    defaults = Serve()  # no configuration: every option at its default
    documented: set[str] = set()
    for flag, setting, default in rows:
        if not setting.startswith("`"):
            assert flag == "`--new-token`", f"{flag}: only --new-token has no c.Serve setting"
            continue
        name = setting.strip("`").removeprefix("c.Serve.")
        assert name in traits, f"{setting} is not an option of r2env serve"
        documented.add(name)
        if flag.startswith("`"):
            assert flag.strip("`") == "--" + name.replace("_", "-"), f"{flag} is set as c.Serve.{flag.strip('`')[2:].replace('-', '_')}"
            shown = _shown_default(getattr(defaults, name))
            assert default == shown, f"{flag}: the default is {shown}"
        else:
            assert name in ("token", "hub_api_token"), f"{setting} has a flag: name it"  # tokens are never flags
    assert documented == set(traits)


def _serve_app() -> Any:
    from r2env.serve.app import make_app

    # The routing table only: no handler runs, so the daemon's objects are not needed.
    return make_app(None, None, None, None, None)  # type: ignore[arg-type]


def test_serve_page_documents_every_route() -> None:
    text = SERVE.read_text(encoding="utf-8")
    routes = {(route.method, route.resource.canonical) for route in _serve_app().router.routes() if route.method != "HEAD"}
    assert routes
    missing = sorted(f"{method} {path}" for method, path in routes if f"`{method} {path}`" not in text)
    assert missing == [], "routes of r2env/serve/app.py that docs/serve.md does not describe"


@dataclass(frozen=True)
class Curl:
    path: Path
    line: int
    method: str
    url: str
    body: str | None

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}: {self.method} {self.url}"


_CURL_VALUE_OPTIONS = {"-H", "--header", "-o", "--output", "-w", "--write-out", "-u", "--user", "--resolve", "-A", "--user-agent"}
_CURL_DATA_OPTIONS = {"-d", "--data", "--data-raw", "--data-binary", "--json"}


def _curl(path: Path, line: int, words: list[str]) -> Curl:
    method, url, body = "", "", None
    rest = iter(words[1:])
    for word in rest:
        if word in ("-X", "--request"):
            method = next(rest)
        elif word in _CURL_DATA_OPTIONS:
            body = next(rest)
        elif word in ("-I", "--head"):
            method = method or "HEAD"
        elif word in _CURL_VALUE_OPTIONS:
            next(rest)
        elif re.match(r"^https?://", word):
            url = word
    return Curl(path, line, method or ("POST" if body is not None else "GET"), url, body)


def curl_examples(path: Path) -> list[Curl]:
    """Every curl command in the file's shell code blocks: the docs use curl only to talk to `r2env serve`."""
    found: list[Curl] = []
    for block in fenced_blocks(path):
        if block.language not in SHELL_LANGUAGES:
            continue
        for offset, line in _logical_lines(block.text):
            if "curl" not in line:
                continue
            segment: list[str] = []
            for word in [*_shell_words(line), ";"]:
                if word in SEPARATORS:
                    if segment and segment[0] == "curl":
                        found.append(_curl(path, block.line + offset, segment))
                    segment = []
                else:
                    segment.append(word)
    return found


CURLS = [curl for path in MARKDOWN for curl in curl_examples(path)]


def _with_sample_values(text: str) -> str:
    """Shell variables ($BUILD, ${LAUNCH}) as a client would have filled them in."""
    return re.sub(r"\$\{?[A-Za-z_]\w*\}?", "b-0123456789ab", text)


def _route(curl: Curl) -> Any:
    """aiohttp's match for the example's method and path, on the daemon's real routing table."""
    from aiohttp.test_utils import make_mocked_request

    assert curl.url, f"{curl}: no http(s) URL"
    parts = urlsplit(_with_sample_values(curl.url))
    app = _serve_app()

    async def resolve() -> Any:
        request = make_mocked_request(curl.method, parts.path + (f"?{parts.query}" if parts.query else ""), app=app)
        return await app.router.resolve(request)

    return asyncio.run(resolve())


def test_serve_page_shows_curl_for_builds_events_launches_and_stopping() -> None:
    shown = {(curl.method, match.route.resource.canonical) for curl in CURLS
             if curl.path == SERVE and (match := _route(curl)).http_exception is None}
    assert {("POST", "/api/v1/builds"), ("GET", "/api/v1/builds/{build_id}/events"), ("POST", "/api/v1/launches"),
            ("DELETE", "/api/v1/launches/{launch_id}"), ("GET", "/build/{provider}/{spec}")} <= shown


@pytest.mark.parametrize("curl", CURLS, ids=str)
def test_curl_example_calls_a_route_the_daemon_has(curl: Curl) -> None:
    match = _route(curl)
    assert match.http_exception is None, f"{curl}: the daemon answers {match.http_exception.status} (no such route)"
    if curl.body is not None:
        body = json.loads(_with_sample_values(curl.body))
        assert isinstance(body, dict), f"{curl}: the body must be a JSON object"
        declared = re.search(r"_body\(request, \{(.*?)\}\)", source_code.getsource(match.handler))
        assert declared, f"{curl}: {match.handler.__name__} takes no body"
        fields = set(re.findall(r"\"(\w+)\":", declared.group(1)))
        assert set(body) <= fields, f"{curl}: {sorted(set(body) - fields)} not among the fields {sorted(fields)}"
