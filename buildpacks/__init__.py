"""r2env's built-in buildpacks: one module per way of declaring an environment, plus add-ons."""

from buildpacks import apt, conda, dockerfile, pipfile, postbuild, python, start
from r2env.buildpack import Buildpack

BUILTIN: tuple[Buildpack, ...] = (
    dockerfile.BUILDPACK,
    conda.BUILDPACK,
    pipfile.BUILDPACK,
    python.BUILDPACK,
    apt.BUILDPACK,
    postbuild.BUILDPACK,
    start.BUILDPACK,
)
