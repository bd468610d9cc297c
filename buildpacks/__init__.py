"""r2env's built-in buildpacks: one module per way of declaring an environment, plus add-ons."""

from buildpacks import apt, conda, dockerfile, pipfile, postbuild, python, start, unsupported
from r2env.buildpack import Buildpack

BUILTIN: tuple[Buildpack, ...] = (
    dockerfile.BUILDPACK,
    unsupported.JULIA,
    unsupported.JULIA_REQUIRE,
    unsupported.NIX,
    unsupported.R,
    conda.BUILDPACK,
    pipfile.BUILDPACK,
    python.BUILDPACK,
    apt.BUILDPACK,
    postbuild.BUILDPACK,
    start.BUILDPACK,
)
