"""pixi projects: the manifest (r2env/parsers/pixi.py), pixi.lock read with py-rattler (lockfile), and the locked
PyPI files fetched beside the conda packages (packages). The conda buildpack's installer installs them."""
