"""Bounded loaders for YAML, JSON and TOML, and a small shape layer that names the key path of a wrong value.

The loaders refuse what would make a parser hang or blow up (issue 17): YAML aliases that expand past a bound
(the "billion laughs" attack: ten nested lists of ten aliases are 10^9 nodes once walked), recursive aliases,
and documents nested deeper than any real declaration file (RecursionError in the composer, json or tomllib).
The shape layer turns "a list where a mapping is expected" into `FILE: dependencies: expected a mapping, got a list`
instead of an AttributeError deep in a parser."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any, Iterator

from ruamel.yaml import YAML
from ruamel.yaml.composer import Composer
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.nodes import MappingNode, Node, SequenceNode

from r2env.errors import R2envError, SpecError
from r2env.grammars import excerpt

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

# Real declaration files and locks nest a handful of levels (conda-lock.yml: 5); json and ruamel.yaml recurse per level.
MAX_DEPTH = 64
# Aliases may repeat parts of a document, but the document once expanded stays within this many nodes more than it
# has: a few shared blocks pass, an alias bomb does not (the check walks each distinct node once: linear).
MAX_ALIAS_EXPANSION = 100_000


class DocumentTooComplex(MarkedYAMLError):
    """A YAML document whose aliases expand past the bound, that refers to itself, or that nests too deep."""


class _BoundedComposer(Composer):
    """ruamel.yaml's composer with a depth bound while composing and an expansion bound on the finished graph."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise DocumentTooComplex(problem=f"the document nests deeper than {MAX_DEPTH} levels",
                                         problem_mark=self.parser.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> Any:
        node = super().compose_document()
        if node is not None and self.anchors:  # no anchor, no alias: nothing can expand
            _check_expansion(node)
        return node


def _check_expansion(root: Node) -> None:
    """Count the nodes of the document with every alias expanded, walking each distinct node once."""
    size: dict[int, int] = {}
    distinct = 0
    stack: list[tuple[Node, bool]] = [(root, False)]
    visiting: set[int] = set()
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            visiting.discard(key)
            size[key] = 1 + sum(size[id(child)] for child in _children(node))
            if size[key] > distinct + MAX_ALIAS_EXPANSION:
                raise DocumentTooComplex(problem=f"its aliases expand to more than {MAX_ALIAS_EXPANSION:,} nodes (an alias bomb?)",
                                         problem_mark=node.start_mark)
            continue
        if key in size:
            continue
        if key in visiting:
            raise DocumentTooComplex(problem="an alias refers to the node that contains it", problem_mark=node.start_mark)
        visiting.add(key)
        distinct += 1
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in size)


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def bounded_yaml(typ: str = "safe") -> YAML:
    """A pure-Python ruamel.yaml loader (`safe` for plain data, `rt` to keep line and column) with the bounds above."""
    yaml = YAML(typ=typ, pure=True)
    yaml.Composer = _BoundedComposer
    return yaml


def load_json(text: str, path: str, error: type[R2envError] = SpecError, hint: str = "") -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as problem:
        raise error(f"{path}: invalid JSON: {problem}", hint or "fix the syntax at that line") from None
    except RecursionError:
        raise error(f"{path}: invalid JSON: the document nests too deep", hint or "fix the file") from None


def load_toml(text: str, path: str, error: type[R2envError] = SpecError) -> dict[str, Any]:
    try:
        data: dict[str, Any] = tomllib.loads(text)
        return data
    except tomllib.TOMLDecodeError as problem:
        raise error(f"{path}: invalid TOML: {problem}", "fix the syntax at that line") from None
    except RecursionError:
        raise error(f"{path}: invalid TOML: the document nests too deep", "fix the file") from None


_TYPE_NAMES = ((bool, "true or false"), (dict, "a mapping"), (list, "a list"), (str, "a string"), (int, "an integer"), (float, "a number"))


def type_name(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    return next((name for kind, name in _TYPE_NAMES if isinstance(value, kind)), type(value).__name__)


@dataclass(frozen=True)
class Shape:
    """A value of a parsed document with where it is (`package[3].hash.sha256`), to ask for the type a parser needs.

    Every wrong type becomes one error naming the file and the key path; `error` and `hint` say which exit code
    and what to do (regenerate a lock, fix a declaration file)."""

    value: Any
    path: str  # the file, as errors show it
    where: str = ""  # the key path inside it ("" for the document)
    error: type[R2envError] = SpecError
    hint: str = "fix the file"

    def fail(self, problem: str) -> R2envError:
        return self.error(f"{self.path}: {self.where + ': ' if self.where else ''}{problem}", self.hint)

    def _expect(self, kind: type, name: str) -> Any:
        # bool is an int in Python; YAML's `yes` must not pass for a number, nor 1 for a string.
        if not isinstance(self.value, kind) or (kind is int and isinstance(self.value, bool)):
            raise self.fail(f"expected {name}, got {type_name(self.value)}")
        return self.value

    def _child(self, value: Any, step: str) -> Shape:
        where = f"{self.where}[{step}]" if step.isdigit() else (f"{self.where}.{step}" if self.where else step)
        return Shape(value, self.path, where, self.error, self.hint)

    def has(self, key: str) -> bool:
        return key in self.mapping()

    def mapping(self) -> dict[Any, Any]:
        value: dict[Any, Any] = self._expect(dict, "a mapping")
        return value

    def key(self, name: str, default: Any = ...) -> Shape:
        """The value at `name`; missing (or null) is an error unless a default is given."""
        data = self.mapping()
        if data.get(name) is None:
            if default is ...:
                raise self._child(None, name).fail("is missing")
            return self._child(default, name)
        return self._child(data[name], name)

    def only(self, *names: str) -> Shape:
        """This mapping, refusing keys other than `names`: a key a reader would ignore is a typo or a hand edit."""
        for key in self.mapping():
            if key not in names:
                raise self.fail(f"unknown key {excerpt(key, 60)} (known: {', '.join(names)})")
        return self

    def items(self) -> Iterator[tuple[str, Shape]]:
        """A mapping's entries, each key a string (TOML and YAML allow numbers and lists as keys)."""
        for key, value in self.mapping().items():
            if not isinstance(key, str):
                raise self.fail(f"key {key!r} is not a string")
            yield key, self._child(value, key)

    def list(self) -> list[Shape]:
        values: list[Any] = self._expect(list, "a list")
        return [self._child(value, str(index)) for index, value in enumerate(values)]

    def string(self) -> str:
        value: str = self._expect(str, "a string")
        return value

    def integer(self) -> int:
        value: int = self._expect(int, "an integer")
        return value


class PositionedMap(dict):  # type: ignore[type-arg]
    """A YAML mapping with the line and column (0-based) of each key, for errors that point into the file."""

    positions: dict[Any, tuple[int, int]]


class PositionedList(list):  # type: ignore[type-arg]
    """A YAML sequence with the line and column (0-based) of each item."""

    positions: list[tuple[int, int]]


def load_positioned_yaml(text: str) -> Any:
    """Plain data (str, int, float, bool, None, dates) in PositionedMap/PositionedList, from the fast safe scanner.

    Not ruamel's round-trip loader: it gathers comments by string concatenation, so a 1 MiB comment took 22 s
    (issue 17's "environment.yml with a 10 MB comment" hang) and 60,000 list items 4 s; this path is linear."""
    yaml = bounded_yaml("safe")
    root = yaml.compose(text)
    constructor = yaml.constructor

    def convert(node: Node) -> Any:
        if isinstance(node, MappingNode):
            mapping = PositionedMap()
            mapping.positions = {}
            for key_node, value_node in node.value:
                key = convert(key_node)
                if isinstance(key, (dict, list)):
                    raise DocumentTooComplex(problem="a mapping key is itself a mapping or a list", problem_mark=key_node.start_mark)
                mapping[key] = convert(value_node)
                mapping.positions[key] = (key_node.start_mark.line, key_node.start_mark.column)
            return mapping
        if isinstance(node, SequenceNode):
            items = PositionedList(convert(item) for item in node.value)
            items.positions = [(item.start_mark.line, item.start_mark.column) for item in node.value]
            return items
        return constructor.construct_object(node, deep=True)

    # Iterative would be longer to read: the composer has already bounded the depth (MAX_DEPTH) and the size.
    return None if root is None else convert(root)
