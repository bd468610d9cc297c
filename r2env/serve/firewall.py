"""Keep containers on the engine's default bridge from opening connections to the daemon's host and to link-local
addresses (cloud metadata, 169.254.169.254), while the daemon runs (issue 17).

Why the default bridge: the engine's built-in BuildKit runs every RUN step on the network named "bridge" and
accepts no other ("network mode … not supported by buildkit" for a network of our own, Docker 20.10), and
`RUN --network=none` cannot be forced from outside without breaking package downloads. A RUN step there reached
services listening on the host's bridge address (172.17.0.1) and its other addresses. Launched notebook servers
run there too and run the same untrusted code.

Traffic from a container to any of the host's own addresses passes the filter table's INPUT chain, traffic routed
onwards passes FORWARD (first through Docker's DOCKER-USER chain, which Docker leaves to administrators:
https://docs.docker.com/network/packet-filtering-firewalls/). The daemon adds one chain of its own, named after its
pid, jumped to from both for packets that enter from the bridge; replies to connections the host opened (the
daemon reaching a launched server) stay allowed. A daemon that was killed leaves its chain behind: the next one
removes chains whose daemon is gone."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from r2env.errors import UsageError

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]
PREFIX = "R2ENV-SERVE-"
_CHAIN = re.compile(rf"^-N ({re.escape(PREFIX)}(\d+))$")
_HINT = ("run the daemon as root on the engine's host with iptables installed, or add equivalent rules yourself "
         "(docs/serve.md) and set c.Serve.block_host_network = False")


def run_command(argv: Sequence[str]) -> "subprocess.CompletedProcess[str]":
    try:
        return subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return subprocess.CompletedProcess(list(argv), 127, "", f"cannot run {argv[0]}: {getattr(error, 'strerror', None) or error}")


@dataclass(frozen=True)
class BridgeFirewall:
    interface: str  # the engine's default bridge (docker0)
    pid: int = 0  # whose chain: the daemon's
    tools: tuple[str, ...] = ("iptables", "ip6tables")
    run: Runner = run_command

    @property
    def chain(self) -> str:
        return f"{PREFIX}{self.pid or os.getpid()}"

    def install(self) -> None:
        """Remove chains of daemons that are gone, then add this daemon's. UsageError (one line) when it cannot."""
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", self.interface):
            raise UsageError(f"c.Serve.block_host_network: the engine's bridge {self.interface!r} is not an interface name", _HINT)
        for tool in self.tools:
            self._sweep(tool)
            self._remove(tool, self.chain)  # a previous daemon with our pid
            forward = "DOCKER-USER" if self.run([tool, "-w", "-S", "DOCKER-USER"]).returncode == 0 else "FORWARD"
            chain = self.chain
            for rule in (
                ["-N", chain],
                ["-A", chain, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "RETURN"],
                ["-A", chain, "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"],  # refused at once, not a timeout
                ["-A", chain, "-j", "DROP"],
                ["-I", "INPUT", "-i", self.interface, "-j", chain],
                ["-I", forward, "-i", self.interface, "-d", "fe80::/10" if tool.endswith("ip6tables") else "169.254.0.0/16", "-j", chain],
            ):
                result = self.run([tool, "-w", *rule])
                if result.returncode != 0:
                    self._remove(tool, chain)
                    reason = (result.stderr.strip().splitlines() or ["failed"])[-1]
                    raise UsageError(f"c.Serve.block_host_network: cannot install firewall rules ({tool}: {reason})", _HINT)

    def remove(self) -> None:
        for tool in self.tools:
            self._remove(tool, self.chain)

    def _sweep(self, tool: str) -> None:
        listed = self.run([tool, "-w", "-S"])
        for line in listed.stdout.splitlines():
            match = _CHAIN.match(line.strip())
            if match and not process_alive(int(match.group(2))):
                self._remove(tool, match.group(1))

    def _remove(self, tool: str, chain: str) -> None:
        """Every jump to `chain`, then the chain itself; nothing when it does not exist."""
        listed = self.run([tool, "-w", "-S"])
        for line in listed.stdout.splitlines():
            words = line.split()
            if len(words) > 2 and words[0] == "-A" and words[-2:] == ["-j", chain]:
                self.run([tool, "-w", "-D", *words[1:]])
        if any(line.strip() == f"-N {chain}" for line in listed.stdout.splitlines()):
            self.run([tool, "-w", "-F", chain])
            self.run([tool, "-w", "-X", chain])


def available_tools() -> tuple[str, ...]:
    """iptables always (an error later says it is missing); ip6tables when installed."""
    return ("iptables",) + (("ip6tables",) if shutil.which("ip6tables") else ())


def process_alive(pid: int) -> bool:
    """Whether a process `pid` exists (one of another user's counts): whose leftovers may be cleaned up."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
