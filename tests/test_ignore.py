"""Ignore files: the repository copy honours .dockerignore and .containerignore, and the declaration files r2env
reads reach the build whatever they say. Pure rules first, then what the engine hands each builder (no Docker)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any, Iterator, Mapping

import pytest

from buildpacks import load_buildpacks
from r2env.cli import main
from r2env.engine import BuildRequest, DockerEngine, _Cli
from r2env.errors import SpecError
from r2env.ignore import escape, parse_ignore, read_ignore_rules
from r2env.inspect import inspect
from r2env.plan import PlanOptions, plan
from r2env.repo import DiskRepo, MemoryRepo
from r2env.select import select

# Docker's reading of an ignore file (moby/patternmatcher ignorefile.ReadAll), line by line.
PARSE_CASES = {
    "a folder with a trailing slash": ("binder/\n", ("binder",)),
    "comments and blank lines are dropped": ("# notes\n\nsecret.txt\n   \n", ("secret.txt",)),
    "a # after leading spaces is a pattern, as in Docker": ("  #not-a-comment\n", ("#not-a-comment",)),
    "a leading slash anchors nothing more: it is dropped": ("/scratch\n", ("scratch",)),
    "two leading slashes become one, then none": ("//scratch\n", ("scratch",)),
    "** is kept": ("**/*.log\n", ("**/*.log",)),
    "an exception keeps its ! and loses its spaces": ("!  notes/keep.log  \n", ("!notes/keep.log",)),
    "paths are cleaned": ("./a/../b/./c\n", ("b/c",)),
    "a UTF-8 byte order mark is dropped": ("\ufeffbinder/\n", ("binder",)),
    "order is kept (the last match wins)": ("*.md\n!README.md\n", ("*.md", "!README.md")),
    "a lone / stays": ("/\n", ("/",)),
}


@pytest.mark.parametrize("text, expected", PARSE_CASES.values(), ids=PARSE_CASES.keys())
def test_ignore_lines_are_read_as_docker_reads_them(text: str, expected: tuple[str, ...]) -> None:
    assert parse_ignore(text) == expected


ESCAPE_CASES = {
    "a plain path is itself": ("binder/requirements.txt", "binder/requirements.txt"),
    "glob characters become one-character classes": ("req[1]*?.txt", "req[[]1][*][?].txt"),
    "a backslash is literal": ("a\\b.txt", "a[\\\\]b.txt"),
}


@pytest.mark.parametrize("path, expected", ESCAPE_CASES.values(), ids=ESCAPE_CASES.keys())
def test_a_kept_path_is_matched_literally(path: str, expected: str) -> None:
    assert escape(path) == expected


BINDER = {"binder/requirements.txt": "tabulate==0.9.0\n-r more.txt\n", "binder/more.txt": "six\n",
          "binder/postBuild": "#!/bin/sh\n", "requirements.txt": "termcolor\n", "binder/NOTES.md": "notes\n"}
RULE_CASES = {
    "both ignore files apply, then every declaration file in binder/ is kept": (
        {**BINDER, ".dockerignore": "binder/\n", ".containerignore": "# too\nsecret-notes.txt\n"},
        (".dockerignore", ".containerignore"),
        ("binder", "secret-notes.txt", "!binder/more.txt", "!binder/postBuild", "!binder/requirements.txt"),
    ),
    "only a .containerignore": (
        {**BINDER, ".containerignore": "binder\n"},
        (".containerignore",),
        ("binder", "!binder/more.txt", "!binder/postBuild", "!binder/requirements.txt"),
    ),
    "no ignore file: the exceptions alone change nothing": (
        {"requirements.txt": "tabulate\n"}, (), ("!requirements.txt",),
    ),
    "root configuration: a * pattern cannot hide requirements.txt": (
        {"requirements.txt": "tabulate\n", "runtime.txt": "python-3.11\n", ".dockerignore": "*\n!*.ipynb\n"},
        (".dockerignore",),
        ("*", "!*.ipynb", "!requirements.txt", "!runtime.txt"),
    ),
}


@pytest.mark.parametrize("files, sources, effective", RULE_CASES.values(), ids=RULE_CASES.keys())
def test_effective_patterns_honour_the_ignore_files_and_keep_the_declaration_files(
    files: Mapping[str, str], sources: tuple[str, ...], effective: tuple[str, ...]
) -> None:
    repo = MemoryRepo(files)
    facts = inspect(repo)
    spec = plan(facts, select(facts, load_buildpacks()), PlanOptions())
    rules = read_ignore_rules(repo, facts, spec)
    assert rules.sources == sources
    assert rules.effective == effective
    copied = {path for step in spec.steps if step.kind == "copy" and not step.source for path in step.inputs}
    assert copied and copied <= set(rules.kept)


@pytest.mark.parametrize("name", [".dockerignore", ".containerignore"])
def test_an_ignore_file_that_is_not_utf8_is_one_line_naming_it(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "requirements.txt").write_text("tabulate\n")
    (tmp_path / name).write_bytes(b"caf\xe9/\n")
    repo = DiskRepo(tmp_path)
    facts = inspect(repo)
    with pytest.raises(SpecError, match=rf"^{name}: cannot be read as UTF-8 text \(byte 0xe9 at offset 3\)"):
        read_ignore_rules(repo, facts, plan(facts, select(facts, load_buildpacks()), PlanOptions()))
    # The build stops before it needs an engine: one line, no traceback.
    assert main(["build", str(tmp_path), "--cache-dir", str(tmp_path / "cache")]) == 4
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and name in err and "Traceback" not in err, err


# --- what the engine hands each builder -----------------------------------------------------------


class _RecordingApi:
    """docker-py's low-level API, as far as a classic build uses it: keeps the context it was sent."""

    def __init__(self) -> None:
        self.kwargs: dict[str, Any] = {}
        self.members: dict[str, bytes] = {}

    def build(self, **kwargs: Any) -> Iterator[dict[str, str]]:
        self.kwargs = kwargs
        with tarfile.open(fileobj=io.BytesIO(kwargs["fileobj"].read())) as archive:
            self.members = {m.name: archive.extractfile(m).read() if m.isfile() else b"" for m in archive.getmembers()}  # type: ignore[union-attr]
        return iter([{"stream": "Step 1/1 : FROM debian:bookworm"}])


class _RecordingClient:
    def __init__(self) -> None:
        self.api = _RecordingApi()


def _repository(root: Path) -> Path:
    files = {".dockerignore": "binder/\n**/*.log\n!notes/keep.log\n", ".containerignore": "secret-notes.txt\n",
             "binder/requirements.txt": "tabulate==0.9.0\n", "binder/NOTES.md": "x", "secret-notes.txt": "x",
             "notes/keep.log": "x", "notes/debug.log": "x", "README.md": "x"}
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def _request(tmp_path: Path, ignore: tuple[str, ...] | None) -> BuildRequest:
    context = _repository(tmp_path / "repo")
    (tmp_path / "scratch").mkdir()
    dockerfile = tmp_path / "scratch" / "Dockerfile"
    dockerfile.write_text("FROM debian:bookworm\nCOPY . /home/jovyan/\n")
    return BuildRequest(context, dockerfile, "r2env-test", {}, {}, {}, ignore=ignore)


EFFECTIVE = ("binder", "**/*.log", "!notes/keep.log", "secret-notes.txt", "!binder/requirements.txt")


def test_the_classic_builder_gets_a_context_filtered_by_the_effective_patterns(tmp_path: Path) -> None:
    client = _RecordingClient()
    list(DockerEngine(client, None).build(_request(tmp_path, EFFECTIVE)))
    members = client.api.members
    assert client.api.kwargs["custom_context"] is True
    dockerfile = client.api.kwargs["dockerfile"]
    assert {name for name in members if not name.endswith(("/", "notes", "binder"))} == {
        ".dockerignore", ".containerignore", "binder/requirements.txt", "notes/keep.log", "README.md", dockerfile,
    }
    # The daemon drops the Dockerfile (and .dockerignore, when the patterns exclude it) from what COPY . sees.
    assert members[".dockerignore"].decode().splitlines() == ["binder/", "**/*.log", "!notes/keep.log", dockerfile]


def test_buildkit_gets_a_dockerfile_specific_ignore_file_beside_the_dockerfile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    argv: list[str] = []
    monkeypatch.setattr(DockerEngine, "_stream_buildkit", lambda self, command, env: iter(argv.extend(command) or ()))
    request = _request(tmp_path, EFFECTIVE)
    list(DockerEngine(None, _Cli("/usr/bin/docker", "buildkit")).build(request))
    written = (tmp_path / "scratch" / "Dockerfile.dockerignore").read_text().splitlines()
    assert written[0].startswith("#") and tuple(written[1:]) == EFFECTIVE
    assert argv[-1] == str(request.context) and str(request.dockerfile) in argv


def test_without_effective_patterns_docker_reads_the_context_as_usual(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(DockerEngine, "_stream_buildkit", lambda self, command, env: iter(()))
    request = _request(tmp_path, None)
    list(DockerEngine(None, _Cli("/usr/bin/docker", "buildkit")).build(request))
    assert not (tmp_path / "scratch" / "Dockerfile.dockerignore").exists()
    client = _RecordingClient()
    client.api.build = lambda **kwargs: iter(client.api.kwargs.update(kwargs) or ())  # type: ignore[method-assign]
    list(DockerEngine(client, None).build(request))
    assert client.api.kwargs["path"] == str(request.context) and "fileobj" not in client.api.kwargs
