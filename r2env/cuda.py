"""Which CUDA a GPU image gets: chosen from the deep-learning frameworks the repository pins, because a
framework release exists only for certain CUDA versions (torch 2.4 has cu118, cu121 and cu124 builds, for
instance; compare cog's compatibility tables). Pure data and one function; the plan applies the choice."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

from r2env.errors import SpecError

# PyTorch: the CUDA builds published at download.pytorch.org/whl/cuXY for each minor release.
TORCH_CUDA = {
    "2.0": ("11.7", "11.8"),
    "2.1": ("11.8", "12.1"),
    "2.2": ("11.8", "12.1"),
    "2.3": ("11.8", "12.1"),
    "2.4": ("11.8", "12.1", "12.4"),
    "2.5": ("11.8", "12.1", "12.4"),
    "2.6": ("11.8", "12.4", "12.6"),
    "2.7": ("11.8", "12.6", "12.8"),
    "2.8": ("12.6", "12.8", "12.9"),
    "2.9": ("12.6", "12.8", "13.0"),
}
# TensorFlow: the CUDA each release was built and tested against (tensorflow[and-cuda] brings it from PyPI).
TENSORFLOW_CUDA = {
    "2.14": ("11.8",),
    "2.15": ("12.2",),
    "2.16": ("12.3",),
    "2.17": ("12.3",),
    "2.18": ("12.5",),
    "2.19": ("12.5",),
}
# NVIDIA's CUDA runtime images with cuDNN, by CUDA minor version.
CUDA_BASES = {
    "11.7": "nvidia/cuda:11.7.1-cudnn8-runtime-ubuntu22.04",
    "11.8": "nvidia/cuda:11.8.0-cudnn8-runtime-ubuntu22.04",
    "12.1": "nvidia/cuda:12.1.1-cudnn8-runtime-ubuntu22.04",
    "12.2": "nvidia/cuda:12.2.2-cudnn8-runtime-ubuntu22.04",
    "12.3": "nvidia/cuda:12.3.2-cudnn9-runtime-ubuntu22.04",
    "12.4": "nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04",
    "12.5": "nvidia/cuda:12.5.1-cudnn-runtime-ubuntu22.04",
    "12.6": "nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04",
    "12.8": "nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04",
    "12.9": "nvidia/cuda:12.9.1-cudnn-runtime-ubuntu24.04",
    "13.0": "nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04",
}
DEFAULT_CUDA = "12.8"  # when nothing pinned narrows the choice
JAX_CUDA_MAJORS = ("12",)  # jax[cuda12] wheels carry their own CUDA 12 libraries
DRIVER_ENV = (("NVIDIA_VISIBLE_DEVICES", "all"), ("NVIDIA_DRIVER_CAPABILITIES", "compute,utility"))


@dataclass(frozen=True)
class CudaChoice:
    version: str  # "12.4"
    base_image: str
    torch_index: str  # "" unless torch is a dependency
    reason: str


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def _pins(requirements: Iterable[str]) -> dict[str, Version | None]:
    """Framework name -> its exact pin (None when named without one)."""
    pins: dict[str, Version | None] = {}
    for text in requirements:
        try:
            requirement = Requirement(text.split(";")[0].strip())
        except InvalidRequirement:
            continue
        name = requirement.name.lower()
        if name not in ("torch", "tensorflow", "jax"):
            continue
        exact = [s.version for s in requirement.specifier if s.operator in ("==", "===") and "*" not in s.version]
        try:
            pins[name] = Version(re.sub(r"\+.*$", "", exact[0])) if exact else pins.get(name)
        except InvalidVersion:
            pins[name] = None
    return pins


def choose_cuda(requirements: Iterable[str], requested: str = "auto") -> CudaChoice:
    """The newest CUDA every pinned framework has builds for; `requested` ("auto" or "X.Y") may choose among them."""
    if requested != "auto" and requested not in CUDA_BASES:
        raise SpecError(f"CUDA {requested} is not a version r2env knows", f"choose one of {', '.join(CUDA_BASES)}")
    pins = _pins(requirements)
    allowed = set(CUDA_BASES)
    why: list[str] = []
    for name, table in (("torch", TORCH_CUDA), ("tensorflow", TENSORFLOW_CUDA)):
        if name not in pins:
            continue
        pin = pins[name]
        if pin is None:
            why.append(f"{name} is not pinned")
            continue
        minor = f"{pin.major}.{pin.minor}"
        if minor not in table:
            if requested == "auto":
                raise SpecError(
                    f"r2env does not know which CUDA builds {name} {pin} has",
                    "set the CUDA version yourself (--cuda 12.8, or c.R2env.cuda)",
                )
            why.append(f"{name} {pin} is newer than r2env's table")
            continue
        builds = table[minor]
        allowed &= set(builds)
        why.append(f"{name} {pin} has CUDA {', '.join(builds)} builds")
    if "jax" in pins:
        allowed = {v for v in allowed if v.split(".")[0] in JAX_CUDA_MAJORS}
        why.append("jax[cuda12] needs CUDA 12")
    if not allowed:
        raise SpecError(f"no CUDA version suits all of: {'; '.join(why)}", "pin framework versions that share a CUDA build")
    if requested != "auto":
        if requested not in allowed:
            raise SpecError(f"CUDA {requested} does not suit: {'; '.join(why)}", f"choose one of {', '.join(sorted(allowed, key=_key))}")
        version, how = requested, f"CUDA {requested} as configured"
    elif not why:
        version, how = DEFAULT_CUDA, f"no framework pin narrows the choice: CUDA {DEFAULT_CUDA}"
    else:
        version, how = max(allowed, key=_key), ""
        how = f"the newest they share is {version}"
    reason = "; ".join([*why, how]) if why else how
    torch_index = f"https://download.pytorch.org/whl/cu{version.replace('.', '')}" if "torch" in pins else ""
    return CudaChoice(version, CUDA_BASES[version], torch_index, reason)
