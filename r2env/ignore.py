"""Ignore files: which repository files the repository copy leaves out. Pure: the engine turns the patterns into
whatever its builder reads (a Dockerfile-specific ignore file for BuildKit, a filtered context for the classic builder).

The patterns keep Docker's syntax (https://docs.docker.com/build/concepts/context/#dockerignore-files): `*`, `?`,
`[...]`, `**`, `!` exceptions, the last matching line wins. This module imports no docker (only the engine may):
it only reads and normalises lines, as Docker's own reader does, and never matches paths itself."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from r2env.errors import SpecError
from r2env.inspect import RepoFacts
from r2env.repo import RepoView
from r2env.spec import ImageSpec, Step

# repo2docker reads both; Docker reads only .dockerignore, Podman/Buildah prefer .containerignore. Both apply here.
IGNORE_FILES = (".dockerignore", ".containerignore")

_GLOB = re.compile(r"([*?\[\\])")


@dataclass(frozen=True)
class IgnoreRules:
    """What the repository copy leaves out, in Docker's pattern syntax and order."""

    sources: tuple[str, ...]  # the ignore files read, in order
    patterns: tuple[str, ...]  # their lines, normalised as Docker reads them
    kept: tuple[str, ...]  # repository files the build needs whatever the patterns say (the declaration files)

    @property
    def effective(self) -> tuple[str, ...]:
        """The patterns a build applies: the ignore files' lines, then an exception for each needed file.
        Exceptions come last because in Docker's syntax the last matching line decides."""
        return (*self.patterns, *(f"!{escape(path)}" for path in self.kept))


def parse_ignore(text: str) -> tuple[str, ...]:
    """The patterns of one ignore file, read as Docker reads .dockerignore (moby/patternmatcher ignorefile.ReadAll):
    a UTF-8 BOM is dropped, lines starting with `#` are comments, blanks are skipped, every pattern is trimmed and
    path-cleaned, and a leading `/` is dropped (patterns are relative to the context root either way)."""
    patterns: list[str] = []
    for number, raw in enumerate(text.splitlines()):
        line = raw.removeprefix("\ufeff") if number == 0 else raw
        if line.startswith("#"):
            continue
        line = line.strip()
        if not line:
            continue
        invert = line.startswith("!")
        pattern = line[1:].strip() if invert else line
        if pattern:
            pattern = posixpath.normpath(pattern)
            if pattern.startswith("//"):  # POSIX keeps two leading slashes; Go's filepath.Clean keeps one
                pattern = "/" + pattern.lstrip("/")
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        patterns.append(("!" if invert else "") + pattern)
    return tuple(patterns)


def escape(path: str) -> str:
    """A literal path as a pattern: glob characters become one-character classes, which both Go's filepath.Match
    (Docker) and docker-py's matcher read (docker-py has no backslash escapes)."""
    return _GLOB.sub(r"[\1]", path).replace("[\\]", "[\\\\]")


def repository_inputs(spec: ImageSpec) -> tuple[str, ...]:
    """Repository files the plan's copy steps read (a copy with a `source` reads another stage, not the repository)."""
    steps: list[Step] = [*spec.steps, *(step for stage in spec.build_stages for step in stage.steps)]
    return tuple(dict.fromkeys(path for step in steps if step.kind == "copy" and not step.source for path in step.inputs))


def declaration_paths(facts: RepoFacts, spec: ImageSpec) -> tuple[str, ...]:
    """Every repository file r2env reads to plan the image, and every one its steps use: the copy steps' inputs,
    the declaration files present (postBuild and start run from the repository copy) and requirements includes."""
    present = (facts.path(name) for name in sorted(facts.files))
    included = (path for requirements in facts.requirements for path in (requirements.path, *requirements.includes, *requirements.constraints))
    return tuple(sorted(set(repository_inputs(spec)) | set(present) | set(included)))


def read_ignore_rules(repo: RepoView, facts: RepoFacts, spec: ImageSpec) -> IgnoreRules:
    """The rules for building `spec` from `repo`: its root ignore files, and the declaration files kept whatever they say."""
    sources: list[str] = []
    patterns: list[str] = []
    for name in IGNORE_FILES:
        if not repo.is_file(name):
            continue
        text = repo.read_text(name)  # one line naming the file when it is not UTF-8 text (r2env/reading.py)
        sources.append(name)
        patterns += parse_ignore(text)
    return IgnoreRules(tuple(sources), tuple(patterns), declaration_paths(facts, spec))
