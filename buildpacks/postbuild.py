"""postbuild: runs the repository's postBuild as the notebook user, after dependencies and the repository.

Binder postBuild scripts call `node`, `npm install --global` and `jupyter labextension install`, because
repo2docker images ship Node.js. Images with a postBuild get Node.js and npm (r2env/node_installer.py), and npm's
global prefix is a folder the notebook user owns (as repo2docker's ${APP_BASE}/npm), so global installs work
without root."""

from __future__ import annotations

import shlex

from buildpacks.steps import PIP_SECRETS
from r2env.buildpack import Buildpack, Contribution, PlanContext, Role
from r2env.inspect import RepoFacts
from r2env.node_installer import copy_node_step
from r2env.spec import Stage, Step

NPM_DIR = "/srv/npm"


def detect(facts: RepoFacts) -> str | None:
    return f"found {facts.path('postBuild')}" if facts.has("postBuild") else None


def node_steps(context: PlanContext) -> tuple[Step, ...]:
    """Node.js, npm and a user-owned global npm prefix. They come before the dependencies (Node.js's copy after
    the server: r2env/node_installer.py), not beside the postBuild step, so that editing the repository or a
    dependency file does not copy them again."""
    uid = context.user_id
    return (
        Step(kind="run", stage=Stage.SYSTEM, buildpack="postbuild", description=f"create {NPM_DIR}, npm's global prefix, owned by the user",
             script=f"install -d -o {uid} -g {uid} {NPM_DIR}"),
        Step(kind="env", stage=Stage.SYSTEM, buildpack="postbuild", description=f"npm install --global goes to {NPM_DIR}",
             # NPM_DIR and NPM_CONFIG_GLOBALCONFIG are repo2docker's names (scripts may use them); the prefix is set
             # through the environment rather than in that npmrc, so the file stays the user's. First on PATH, as
             # the commands a postBuild installs globally are meant to win over anything of the same name.
             env=(("NPM_DIR", NPM_DIR), ("NPM_CONFIG_GLOBALCONFIG", f"{NPM_DIR}/npmrc"), ("NPM_CONFIG_PREFIX", NPM_DIR),
                  ("PATH", f"{NPM_DIR}/bin:$PATH"))),
        copy_node_step(),
    )


def contribute(facts: RepoFacts, context: PlanContext) -> Contribution:
    path = "./" + shlex.quote(facts.path("postBuild"))
    make_executable = f"chmod +x {path} && " if "postBuild" in facts.not_executable else ""
    step = Step(
        kind="run",
        stage=Stage.POST_BUILD,
        buildpack="postbuild",
        description=f"run {facts.path('postBuild')}",
        script=make_executable + path,
        user="user",
        # The repository's own script: the fetch settings without credentials, so that a postBuild can still
        # pip install or npm install through the same proxy and index, and cannot read a password (issue 17).
        secrets=PIP_SECRETS,
        repository_code=True,
    )
    return Contribution(steps=node_steps(context) + (step,))


BUILDPACK = Buildpack("postbuild", Role.ADDON, detect, contribute)
