"""A readable summary of an image spec (`r2env plan` without --json)."""

from __future__ import annotations

from r2env.spec import ImageSpec


def summarize(spec: ImageSpec) -> str:
    lines = [f"image spec {spec.digest}"]
    if spec.config_dir:
        lines.append(f"configuration: {spec.config_dir}/")
    lines.append("detected:")
    lines += [f"  {d.buildpack:<10} {d.role:<9} {d.reason}" for d in spec.detections]
    if spec.dockerfile:
        lines.append(f"Dockerfile {spec.dockerfile} is built as-is with build args "
                     + ", ".join(f"{k}={v}" for k, v in spec.build_args))
        return "\n".join(lines)
    lines.append(f"base image: {spec.base_image}" + (f" (Debian {spec.suite})" if spec.suite else ""))
    if spec.interpreter:
        lines.append(f"python: {spec.interpreter.version} from {spec.interpreter.source} ({spec.interpreter.reason})")
    lines.append(f"user: {spec.user_name} ({spec.user_id}), repository at {spec.repo_dir}")
    for kind, packages in spec.packages:
        lines.append(f"{kind} packages: {', '.join(packages)}")
    for stage in spec.build_stages:
        lines.append(f"build stage {stage.name} (only what the image copies from it is kept):")
        lines += [f"  {i:>2}. {s.buildpack}: {s.description}" for i, s in enumerate(stage.steps, 1)]
    lines.append("steps:")
    lines += [f"  {i:>2}. [{s.stage.name.lower()}] {s.buildpack}: {s.description}" for i, s in enumerate(spec.steps, 1)]
    lines.append(f"command: {' '.join(spec.command)}")
    return "\n".join(lines)
