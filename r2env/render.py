"""render: the image spec as Dockerfile text. Pure; the repository itself is the build context."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, fields, is_dataclass, replace
from typing import Iterator

from r2env.errors import SpecError
from r2env.plain_steps import hosts_entrypoint
from r2env.redact import shorten
from r2env.spec import BuildSecret, BuildStage, ImageSpec, Stage, Step
from r2env.uv_installer import UV_DIR, UV_MOUNT, UV_STAGE

# Build secrets are BuildKit secret mounts: they are readable during a step and absent from every layer
# and from `docker history` (https://docs.docker.com/build/building/secrets/). A step mounts only the groups its
# `secrets` name, so no other step can read them (issue 17).
SECRET_CA = "r2env-ca"  # the extra CA bundle
_SECRETS_DIR = "/run/secrets"  # where BuildKit mounts a secret by default
_PIP_CACHE = "/tmp/r2env-pip-cache"
_UV_CACHE = "/tmp/r2env-uv-cache"
# uv as pip is used in an image: the repository's own uv.toml or [tool.uv] does not change what r2env installs (pip
# reads no repository configuration either); several indexes are searched together, as pip does; files are copied
# out of the cache mount (a hard link cannot cross into the layer); no Python is downloaded but by `uv python install`.
_UV_SETTINGS = "UV_NO_CONFIG=1 UV_INDEX_STRATEGY=unsafe-best-match UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=manual UV_NO_PROGRESS=1"
ENTRYPOINT = "/usr/local/bin/r2env-entrypoint"
SOURCE_DATE_EPOCH = 1704067200  # 2024-01-01, as for bootstrapped bases

ENTRYPOINT_SCRIPT = """#!/bin/sh
# Written by r2env: runs the repository's start script (if any) around every command.
if [ -n "${R2ENV_START:-}" ] && [ -f "$R2ENV_START" ]; then exec "$R2ENV_START" "$@"; fi
exec "$@"
"""


def env_secret(group: BuildSecret, public: bool = False) -> str:
    """The id of the secret file with a group's shell exports; `public`: the copy without credentials, for
    steps that run the repository's own code (r2env/build_secrets.py)."""
    return f"r2env-env-{group}" + ("-public" if public else "")


_PLUMBING = re.compile(
    r"--mount=\S+\s+|for s in (?:/run/secrets/r2env-env-\S+ )+; do if \[ -f \$s \]; then \. \$s; fi; done && "
    r"|export SOURCE_DATE_EPOCH=\d+ PYTHONDONTWRITEBYTECODE=1 && |export PIP_CACHE_DIR=\S+ && |export PIP_NO_CACHE_DIR=1 && |rm -f /etc/apt/apt.conf.d/docker-clean && "
    r"|export (?:UV_CACHE_DIR=\S+ |UV_NO_CACHE=1 )?UV_NO_CONFIG=1 [^&]*&& "
)


def display_command(instruction: str) -> str:
    """A rendered instruction without r2env's plumbing (mounts, secret sourcing, cache settings), for logs."""
    return _PLUMBING.sub("", instruction)


@dataclass(frozen=True)
class RenderOptions:
    buildkit: bool = True  # cache and secret mounts; without them the classic builder gets plain RUN steps


def _shell_words(words: tuple[str, ...]) -> str:
    return json.dumps(list(words))


def _env_line(pairs: tuple[tuple[str, str], ...]) -> str:
    return "ENV " + " \\\n    ".join(f"{key}={json.dumps(value)}" for key, value in pairs)


def _mounts(step: Step, spec: ImageSpec, options: RenderOptions, apt_ids: str) -> list[str]:
    if not options.buildkit:
        return []
    # mode 0444: steps run as the notebook user too. A secret the build was not given is simply not mounted.
    mounts = [f"--mount=type=secret,id={env_secret(group, step.repository_code)},mode=0444" for group in step.secrets]
    if "ca" in step.secrets:
        mounts.append(f"--mount=type=secret,id={SECRET_CA},mode=0444")
    if "apt" in step.caches:
        mounts += [
            f"--mount=type=cache,id=r2env-apt-cache{apt_ids},target=/var/cache/apt,sharing=locked",
            f"--mount=type=cache,id=r2env-apt-lists{apt_ids},target=/var/lib/apt/lists,sharing=locked",
        ]
    if "pip" in step.caches:
        mounts.append(f"--mount=type=cache,id=r2env-pip,target={_PIP_CACHE},uid={spec.user_id},gid={spec.user_id}")
    if "uv" in step.caches:
        mounts.append(f"--mount=type=bind,from={UV_STAGE},source={UV_DIR},target={UV_MOUNT}")
        if not step.repository_code:
            # One cache per user id: uv's entries belong to whoever wrote them, and another uid cannot add to them.
            uid = spec.user_id if step.user == "user" else 0
            mounts.append(f"--mount=type=cache,id=r2env-uv-{uid},target={_UV_CACHE},uid={uid},gid={uid}")
    return mounts


def _script(step: Step, spec: ImageSpec, options: RenderOptions) -> str:
    script = step.script
    if "pip" in step.caches:
        script = (f"export PIP_CACHE_DIR={_PIP_CACHE} && " if options.buildkit else "export PIP_NO_CACHE_DIR=1 && ") + script
    if "uv" in step.caches:
        # Code of the repository's gets no shared cache: it could plant files there for every later build.
        cache = f"UV_CACHE_DIR={_UV_CACHE} " if options.buildkit and not step.repository_code else "UV_NO_CACHE=1 "
        script = f"export {cache}{_UV_SETTINGS} && " + script
    if "apt" in step.caches:
        # Docker's debian images delete downloaded .debs after each install; the cache mount wants them kept.
        script = ("rm -f /etc/apt/apt.conf.d/docker-clean && " if options.buildkit else "") + script
        if not options.buildkit:
            script += " && rm -rf /var/lib/apt/lists/*"
    if step.user == "user" or "pip" in step.caches or "uv" in step.caches:
        # With SOURCE_DATE_EPOCH set, the installers' compile writes checked-hash .pyc files (PEP 552), whose bytes
        # do not depend on when the build ran; PYTHONDONTWRITEBYTECODE keeps every other Python start of the build
        # (uv's look at the interpreter, setuptools' .pth, a postBuild) from writing timestamped ones. The
        # environment tree is then byte-identical across rebuilds.
        script = f"export SOURCE_DATE_EPOCH={SOURCE_DATE_EPOCH} PYTHONDONTWRITEBYTECODE=1 && " + script
    if step.secrets and options.buildkit:
        files = " ".join(f"{_SECRETS_DIR}/{env_secret(group, step.repository_code)}" for group in step.secrets)
        script = f"for s in {files} ; do if [ -f $s ]; then . $s; fi; done && " + script
    return script


# apt's caches are locked while a step uses them (apt itself takes locks in them), so steps sharing them run one
# after another. A build stage's apt step gets caches of its own and runs beside the image's; a stage that repeats
# the image's first steps (image_env) keeps the image's, or it would not be the same instruction, built once.
_IMAGE_APT_CACHES = ""
_BUILD_STAGE_APT_CACHES = "-build-stage"


def _render_step(step: Step, spec: ImageSpec, options: RenderOptions, apt_ids: str = _IMAGE_APT_CACHES) -> list[str]:
    lines = [f"# [{step.stage.name.lower()}] {step.buildpack}: {step.description}"]
    if step.kind == "env":
        lines.append(_env_line(step.env))
    elif step.kind == "copy" and step.source:
        # Absolute paths, kept at the same place: a conda prefix is not relocatable.
        chown = f" --chown={spec.user_id}:{spec.user_id}" if step.user == "user" else ""
        lines += [f"COPY --from={step.source}{chown} {json.dumps([path, path])}" for path in step.inputs]
    elif step.kind == "copy":
        # One COPY per folder (each instruction is a step of its own); the inputs are files the inspector read.
        owner = f"{spec.user_id}:{spec.user_id}"
        folders: dict[str, list[str]] = {}
        for path in step.inputs:
            folders.setdefault(path.rpartition("/")[0], []).append(path)
        for folder, paths in folders.items():
            target = [spec.repo_dir + "/" + paths[0]] if len(paths) == 1 else [f"{spec.repo_dir}/{folder}/".replace("//", "/")]
            lines.append(f"COPY --chown={owner} {json.dumps(paths + target)}")
    else:
        lines.append("RUN " + " ".join([*_mounts(step, spec, options, apt_ids), _script(step, spec, options)]))
    return lines


# A Dockerfile is read line by line (a newline ends an instruction; \r is dropped): a value carrying one would
# become an instruction of its own. Other controls have no business in any value either.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Scripts may continue on the next line as Docker does (a backslash ends the line), unless that line starts with
# `#`, which Docker drops as a comment inside a continued instruction.
_CONTINUATION = re.compile(r"\\\n(?![ \t]*#)")


def _strings(value: object, path: str) -> Iterator[tuple[str, str]]:
    """Every string in a spec (dataclasses, tuples, pairs), with its field path: `steps[3].script`."""
    if isinstance(value, str):
        yield path, value
    elif is_dataclass(value) and not isinstance(value, type):
        for field in fields(value):
            yield from _strings(getattr(value, field.name), f"{path}.{field.name}" if path else field.name)
    elif isinstance(value, (tuple, list)):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")


def refuse_unsafe_values(spec: ImageSpec) -> None:
    """The last line of defence: values are checked against their grammar where they enter (options in
    r2env/option_checks.py, declaration and lock files where they are read); whatever still carries a newline or
    control character is refused here rather than rendered into an instruction of its own."""
    for path, text in _strings(spec, ""):
        if _CONTROL.search(_CONTINUATION.sub("", text) if path.endswith(".script") else text):
            raise SpecError(
                f"the image spec's {path} = {shorten(repr(text), 120)} contains a newline or control character",
                "a declaration file, r2env.lock or an option gives a value on two lines: fix it (r2env refuses to render it into the Dockerfile)",
            )


def _classic_uv_copy() -> str:
    """The classic builder has no bind mounts: uv is copied in, and stays in such an image (docs/user-guide.md)."""
    return f"COPY --from={UV_STAGE} {UV_DIR} {UV_MOUNT}"


def render_dockerfile(spec: ImageSpec, options: RenderOptions = RenderOptions()) -> str:
    """The Dockerfile for a planned image. (An exclusive Dockerfile build uses the repository's own file.)"""
    refuse_unsafe_values(spec)
    out = [f"# Generated by r2env from the image spec; do not edit. Buildpacks: {', '.join(spec.buildpacks)}"]
    for build_stage in spec.build_stages:
        out.append(f"FROM {spec.base_image} AS {build_stage.name}")
        out.append(_env_line(spec.env if build_stage.image_env else (("DEBIAN_FRONTEND", "noninteractive"), ("LANG", "C.UTF-8"))))
        out.append("SHELL [\"/bin/bash\", \"-o\", \"pipefail\", \"-c\"]")
        copied_uv = False
        apt_ids = _IMAGE_APT_CACHES if build_stage.image_env else _BUILD_STAGE_APT_CACHES
        for step in build_stage.steps:
            if not copied_uv and "uv" in step.caches and not options.buildkit:
                out.append(_classic_uv_copy())
                copied_uv = True
            out.extend(_render_step(step, spec, options, apt_ids))
    out.append(f"FROM {spec.base_image}")
    out.append(_env_line(spec.env))
    out.append("SHELL [\"/bin/bash\", \"-o\", \"pipefail\", \"-c\"]")
    entry = "\\n".join(ENTRYPOINT_SCRIPT.splitlines())
    write_entrypoint = f"printf '%b\\n' {shlex.quote(entry)} > {ENTRYPOINT} && chmod 0755 {ENTRYPOINT}"
    # Written by the step that creates the user (r2env/plain_steps.py; with apt.txt, that step installs its packages
    # too): a RUN of its own costs a step (~0.3 s of a cold build).
    host = next((step for step in spec.steps_in(Stage.SYSTEM) if hosts_entrypoint(step)), None)
    copied_uv = False
    user = "root"
    pending = ["entrypoint", "repo"]
    for stage in sorted({step.stage for step in spec.steps} | {Stage.REPO}):
        if stage > Stage.SYSTEM and "entrypoint" in pending:
            pending.remove("entrypoint")
            if host is None:
                out.append("# [system] r2env's entrypoint: runs the repository's start script around every command")
                out.append(f"RUN {write_entrypoint}")
            out.append(f"WORKDIR {spec.repo_dir}")
        if stage >= Stage.REPO and "repo" in pending:
            pending.remove("repo")
            out.append("# [repo] the repository's contents")
            out.append(f"COPY --chown={spec.user_id}:{spec.user_id} . {spec.repo_dir}/")
        for step in spec.steps_in(stage):
            wanted = spec.user_name if step.user == "user" else "root"
            if not copied_uv and "uv" in step.caches and not options.buildkit:
                out.append(_classic_uv_copy())
                copied_uv = True
            if step.kind == "run" and wanted != user:
                out.append(f"USER {wanted}")
                user = wanted
            if step is host:
                step = replace(step, description=f"{step.description}; r2env's entrypoint, which runs the repository's start script around every command",
                               script=f"{step.script} && {write_entrypoint}")
            out.extend(_render_step(step, spec, options))
    if user != spec.user_name:
        out.append(f"USER {spec.user_name}")
    out.append(f"ENTRYPOINT {_shell_words(spec.entrypoint)}")
    out.append(f"CMD {_shell_words(spec.command)}")
    out.append("LABEL " + " ".join(f"{key}={json.dumps(value)}" for key, value in spec.labels))
    return "\n".join(out) + "\n"
