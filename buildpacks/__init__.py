"""r2env's built-in buildpacks: one module per way of declaring an environment, plus add-ons."""

from buildpacks import apt, conda, dockerfile, pipfile, pixi, postbuild, python, r, start, unsupported
from importlib.metadata import entry_points

from r2env.buildpack import ENTRY_POINT_GROUP, Buildpack
from r2env.errors import UsageError

BUILTIN: tuple[Buildpack, ...] = (
    dockerfile.BUILDPACK,
    unsupported.JULIA,
    unsupported.JULIA_REQUIRE,
    unsupported.NIX,
    r.BUILDPACK,
    pixi.BUILDPACK,
    conda.BUILDPACK,
    pipfile.BUILDPACK,
    python.BUILDPACK,
    apt.BUILDPACK,
    postbuild.BUILDPACK,
    start.BUILDPACK,
)


def load_buildpacks() -> dict[str, Buildpack]:
    """Built-ins first, then third-party buildpacks; a third party may not silently replace a built-in."""
    registry = {buildpack.name: buildpack for buildpack in BUILTIN}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        buildpack = entry.load()
        if not isinstance(buildpack, Buildpack):
            raise UsageError(f"entry point {entry.name!r} ({entry.value}) is not an r2env Buildpack", "fix the plugin")
        if buildpack.name in registry and registry[buildpack.name] is not buildpack:
            raise UsageError(
                f"buildpack {buildpack.name!r} from {entry.value} clashes with an existing one", "rename the plugin's buildpack"
            )
        registry[buildpack.name] = buildpack
    return registry
