"""`--gpus` values as data: what a user asks for, and how each engine spells it. Pure: no engine here."""

from __future__ import annotations

import re
from dataclasses import dataclass

from r2env.errors import UsageError

GPU_CAPABILITIES = ("gpu",)
CDI_KIND = "nvidia.com/gpu"
TOOLKIT_HINT = (
    "install the NVIDIA Container Toolkit on the Docker host and restart dockerd "
    "(https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/install-guide.html), or launch without --gpus"
)


@dataclass(frozen=True)
class GpuRequest:
    """All GPUs (count -1), the first `count`, or the listed device ids (index or UUID), as Docker's --gpus has it."""

    count: int = 0
    device_ids: tuple[str, ...] = ()
    text: str = ""  # what the user wrote, for messages

    def cdi_devices(self) -> tuple[str, ...]:
        """Podman spells GPUs as CDI device names."""
        if self.device_ids:
            return tuple(f"{CDI_KIND}={device}" for device in self.device_ids)
        if self.count < 0:
            return (f"{CDI_KIND}=all",)
        return tuple(f"{CDI_KIND}={index}" for index in range(self.count))


def no_gpu_runtime(host: str, gpus: GpuRequest | None) -> str:
    asked = f"--gpus {gpus.text}" if gpus else "--gpus"
    return f"the Docker engine at {host} has no GPU runtime (no NVIDIA device driver is registered), so it cannot pass {asked}"


_DEVICE_ID = re.compile(r"^[A-Za-z0-9:._-]+$")


def parse_gpus(text: str) -> GpuRequest:
    """`all`, a positive count, or `device=0,1` (quotes as a shell would leave them are accepted)."""
    value = text.strip().strip("'\"")
    if value == "all":
        return GpuRequest(count=-1, text=text)
    # At most 4 digits: no host has more GPUs, and int() refuses over 4,300 digits (CVE-2020-10735) with a ValueError.
    if value.isdigit() and len(value) <= 4 and int(value) > 0:
        return GpuRequest(count=int(value), text=text)
    if value.startswith("device="):
        devices = tuple(d.strip() for d in value.removeprefix("device=").split(",") if d.strip())
        if devices and all(_DEVICE_ID.match(d) for d in devices):
            return GpuRequest(device_ids=devices, text=text)
    raise UsageError(f"--gpus {text!r} is not a GPU request", "use all, a count such as 1, or device=0,1")
