"""r2env.serve.firewall with a fake iptables: the rules the daemon adds around the engine's bridge (issue 17), that
it cleans up after itself and after daemons that died, and one line with a hint when it cannot. The real rules are
exercised on the engine by integration/test_serve_network.py."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from r2env.errors import UsageError
from r2env.serve.config import load_serve_config
from r2env.serve.daemon import _firewall
from r2env.serve.firewall import BridgeFirewall

DEAD_PID = 2**22 + 12345  # above the kernel's pid_max: never a live process


@dataclass
class FakeIptables:
    """Just enough of `iptables -S`, -N, -A, -I, -D, -F, -X to follow the chains and jumps."""

    rules: list[str] = field(default_factory=lambda: ["-P INPUT ACCEPT", "-N DOCKER-USER", "-A DOCKER-USER -j RETURN"])
    calls: list[list[str]] = field(default_factory=list)
    fail_on: str = ""

    def __call__(self, argv: Sequence[str]) -> "subprocess.CompletedProcess[str]":
        argv = list(argv)
        self.calls.append(argv)
        words = argv[2:] if argv[1] == "-w" else argv[1:]
        if self.fail_on and self.fail_on in words:
            return subprocess.CompletedProcess(argv, 4, "", "iptables v1.8.9: can't initialize iptables table `filter': Permission denied\n")
        action, rest = words[0], words[1:]
        if action == "-S":
            if rest:
                found = f"-N {rest[0]}" in self.rules or rest[0] in ("INPUT", "FORWARD")
                return subprocess.CompletedProcess(argv, 0 if found else 1, "", "")
            return subprocess.CompletedProcess(argv, 0, "\n".join(self.rules) + "\n", "")
        if action == "-N":
            self.rules.append(f"-N {rest[0]}")
        elif action in ("-A", "-I"):
            self.rules.append("-A " + " ".join(rest))
        elif action == "-D":
            self.rules.remove("-A " + " ".join(rest))
        elif action == "-F":
            self.rules = [rule for rule in self.rules if not rule.startswith(f"-A {rest[0]} ")]
        elif action == "-X":
            self.rules.remove(f"-N {rest[0]}")
        return subprocess.CompletedProcess(argv, 0, "", "")


def test_the_daemon_rejects_new_connections_from_the_bridge_to_the_host_and_to_link_local_addresses() -> None:
    iptables = FakeIptables()
    BridgeFirewall("docker0", pid=4242, tools=("iptables",), run=iptables).install()
    chain = "R2ENV-SERVE-4242"
    assert "-A INPUT -i docker0 -j " + chain in iptables.rules
    assert "-A DOCKER-USER -i docker0 -d 169.254.0.0/16 -j " + chain in iptables.rules
    own = [rule for rule in iptables.rules if rule.startswith(f"-A {chain} ")]
    assert own == [
        f"-A {chain} -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN",  # the daemon still reaches its servers
        f"-A {chain} -p tcp -j REJECT --reject-with tcp-reset",
        f"-A {chain} -j DROP",
    ]
    assert all(call[1] == "-w" for call in iptables.calls)  # waits for the xtables lock Docker also takes


def test_removing_leaves_the_tables_as_they_were() -> None:
    iptables = FakeIptables()
    before = list(iptables.rules)
    firewall = BridgeFirewall("docker0", pid=4242, tools=("iptables", "ip6tables"), run=iptables)
    firewall.install()
    firewall.remove()
    assert iptables.rules == before
    assert "-A FORWARD -i docker0 -d fe80::/10 -j R2ENV-SERVE-4242" not in iptables.rules


def test_chains_of_daemons_that_died_are_swept_and_live_ones_kept() -> None:
    iptables = FakeIptables()
    BridgeFirewall("docker0", pid=DEAD_PID, tools=("iptables",), run=iptables).install()  # then killed with -9
    BridgeFirewall("docker0", pid=os.getpid(), tools=("iptables",), run=iptables).install()  # alive
    BridgeFirewall("docker0", pid=4242, tools=("iptables",), run=iptables).install()
    assert not any(f"R2ENV-SERVE-{DEAD_PID}" in rule for rule in iptables.rules)
    assert f"-N R2ENV-SERVE-{os.getpid()}" in iptables.rules and "-N R2ENV-SERVE-4242" in iptables.rules


def test_without_permission_the_daemon_stops_with_one_line_and_leaves_nothing() -> None:
    iptables = FakeIptables(fail_on="INPUT")
    before = list(iptables.rules)
    with pytest.raises(UsageError) as refused:
        BridgeFirewall("docker0", pid=4242, tools=("iptables",), run=iptables).install()
    assert refused.value.message == "c.Serve.block_host_network: cannot install firewall rules (iptables: iptables v1.8.9: can't initialize iptables table `filter': Permission denied)"
    assert "c.Serve.block_host_network = False" in refused.value.hint
    assert iptables.rules == before


def test_a_missing_iptables_is_one_line() -> None:
    with pytest.raises(UsageError, match=r"cannot install firewall rules \(r2env-no-such-iptables: cannot run r2env-no-such-iptables"):
        BridgeFirewall("docker0", pid=4242, tools=("r2env-no-such-iptables",)).install()


def test_a_bridge_name_that_is_no_interface_name_is_refused() -> None:
    with pytest.raises(UsageError, match="is not an interface name"):
        BridgeFirewall("docker0 -j ACCEPT", pid=4242, tools=("iptables",), run=FakeIptables()).install()


@dataclass
class _Engine:
    host: str
    bridge: str = "docker0"

    def default_bridge(self) -> str:
        return self.bridge


@pytest.mark.parametrize(("engine", "message"), [
    (_Engine("tcp://build-host:2376"), "the engine at tcp://build-host:2376 is not on this machine"),
    (_Engine("unix:///var/run/docker.sock", bridge=""), "the engine has no default bridge network"),
])
def test_an_engine_the_daemon_cannot_firewall_stops_it_at_start(engine: _Engine, message: str) -> None:
    with pytest.raises(UsageError, match=message) as refused:
        _firewall(engine)  # type: ignore[arg-type]
    assert refused.value.message.startswith("c.Serve.block_host_network: ")


def test_the_firewall_is_on_unless_the_configuration_turns_it_off(tmp_path: Path) -> None:
    assert load_serve_config(None, {}, {}).block_host_network is True
    config = tmp_path / "r2env_config.py"
    config.write_text("c.Serve.block_host_network = False\n")
    assert load_serve_config(str(config), {}, {}).block_host_network is False
