"""A second Docker engine for the remote-engine tests: Debian's dockerd on a loopback TCP port with TLS (a CA,
server and client certificates made here with cryptography), its own bridge, roots and NAT rule, so builds on it
reach the package mirrors; and an sshd on loopback whose sessions reach that engine, for ssh:// addresses."""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

BRIDGE = "r2remotebr0"
SUBNET = "172.31.252.0/24"
GATEWAY = "172.31.252.1/24"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    path.chmod(0o600)


def _certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name | None, issuer_key: ec.EllipticCurvePrivateKey,
                 usage: x509.ObjectIdentifier | None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1)))
    if usage is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    else:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if usage == ExtendedKeyUsageOID.SERVER_AUTH:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                                         x509.DNSName("localhost")]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_certificates(directory: Path) -> tuple[Path, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as Docker's "Protect the Docker daemon
    socket" page lays them out: (server directory, client directory with ca.pem, cert.pem, key.pem)."""
    server_dir, client_dir = directory / "server", directory / "client"
    server_dir.mkdir(parents=True)
    client_dir.mkdir()
    ca_key = _key()
    ca = _certificate("r2env test CA", ca_key, None, ca_key, None)
    for target in (server_dir, client_dir):
        (target / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    server_key, client_key = _key(), _key()
    server = _certificate("localhost", server_key, ca.subject, ca_key, ExtendedKeyUsageOID.SERVER_AUTH)
    client = _certificate("r2env test client", client_key, ca.subject, ca_key, ExtendedKeyUsageOID.CLIENT_AUTH)
    (server_dir / "cert.pem").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    _write_key(server_key, server_dir / "key.pem")
    (client_dir / "cert.pem").write_bytes(client.public_bytes(serialization.Encoding.PEM))
    _write_key(client_key, client_dir / "key.pem")
    return server_dir, client_dir


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, check=check, capture_output=True)


# Containers on the test bridge reach the mirrors through NAT; the daemon runs with --iptables=false (two daemons
# must not both manage the DOCKER chains), so the rules are ours, added and removed here.
_NAT_RULES = (
    ("-t", "nat", "POSTROUTING", "-s", SUBNET, "!", "-o", BRIDGE, "-j", "MASQUERADE"),
    ("-t", "filter", "FORWARD", "-i", BRIDGE, "-j", "ACCEPT"),
    ("-t", "filter", "FORWARD", "-o", BRIDGE, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"),
)


def _rules(action: str) -> None:
    for table, name, chain, *rule in _NAT_RULES:
        if action == "-D":
            while _run("iptables", table, name, "-C", chain, *rule, check=False).returncode == 0:
                _run("iptables", table, name, "-D", chain, *rule)
        else:
            _run("iptables", table, name, "-I", chain, *rule)


@dataclass
class TlsDaemon:
    """dockerd at tcp://127.0.0.1:PORT, TLS required (--tlsverify)."""

    state: Path
    certificates: Path
    port: int = 0
    client_certs: Path = Path()
    process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        return {"DOCKER_HOST": self.host, "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(self.client_certs)}

    def start(self) -> "TlsDaemon":
        server_certs, self.client_certs = make_certificates(self.certificates)
        self.port = free_port()
        _run("ip", "link", "delete", BRIDGE, check=False)  # left over from an interrupted run
        _rules("-D")
        _run("ip", "link", "add", BRIDGE, "type", "bridge")
        _run("ip", "addr", "add", GATEWAY, "dev", BRIDGE)
        _run("ip", "link", "set", BRIDGE, "up")
        _rules("-I")
        self.state.mkdir(parents=True)
        log = (self.state / "dockerd.log").open("wb")
        # Never --bridge none: it deletes the main daemon's docker0 (see integration/test_gpus.py).
        self.process = subprocess.Popen(
            ["dockerd", "--host", self.host, "--tlsverify", f"--tlscacert={server_certs / 'ca.pem'}",
             f"--tlscert={server_certs / 'cert.pem'}", f"--tlskey={server_certs / 'key.pem'}",
             "--data-root", str(self.state / "root"), "--exec-root", str(self.state / "exec"), "--pidfile", str(self.state / "dockerd.pid"),
             "--bridge", BRIDGE, "--iptables=false", "--ip-masq=false", "--ip-forward=false"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        env = {**os.environ, **self.environment()}
        for _ in range(150):
            if subprocess.run(["/usr/bin/docker", "info"], capture_output=True, env=env).returncode == 0:
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"the TLS test daemon did not start:\n{(self.state / 'dockerd.log').read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        _rules("-D")
        _run("ip", "link", "delete", BRIDGE, check=False)
        shutil.rmtree(self.state, ignore_errors=True)


@dataclass
class SshServer:
    """sshd on 127.0.0.1:PORT for root with a key made here; its sessions get the TLS daemon's DOCKER_* variables
    (sshd_config SetEnv), so `ssh ... docker system dial-stdio`, what docker-py and the docker CLI run for
    ssh:// hosts, reaches that engine. `bin` holds an `ssh` that uses this server's key and known-hosts file."""

    directory: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def bin(self) -> Path:
        return self.directory / "bin"

    @property
    def host(self) -> str:
        return f"ssh://root@127.0.0.1:{self.port}"

    def start(self, engine_env: dict[str, str]) -> "SshServer":
        sshd = shutil.which("sshd") or "/usr/sbin/sshd"
        if not os.access(sshd, os.X_OK):
            raise RuntimeError("sshd is not installed (Debian's openssh-server)")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        for name in ("host_key", "client_key"):
            _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.directory / name))
        (self.directory / "authorized_keys").write_text((self.directory / "client_key.pub").read_text())
        (self.directory / "authorized_keys").chmod(0o600)
        set_env = " ".join(f"{key}={value}" for key, value in engine_env.items())
        config = self.directory / "sshd_config"
        config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.directory / 'host_key'}\nPidFile {self.directory / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {self.directory / 'authorized_keys'}\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n"
            f"KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nSetEnv {set_env}\n"
        )
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        with (self.directory / "sshd.log").open("wb") as log:
            self.process = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=log)
        client_config = self.directory / "ssh_config"
        client_config.write_text(f"Host 127.0.0.1\n  IdentityFile {self.directory / 'client_key'}\n  IdentitiesOnly yes\n"
                                 f"  StrictHostKeyChecking no\n  UserKnownHostsFile {self.directory / 'known_hosts'}\n  LogLevel ERROR\n")
        self.bin.mkdir()
        wrapper = self.bin / "ssh"
        wrapper.write_text(f"#!/bin/sh\nexec /usr/bin/ssh -F {client_config} \"$@\"\n")
        wrapper.chmod(0o755)
        for _ in range(100):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.1)
        raise RuntimeError(f"sshd did not start: {(self.directory / 'sshd.log').read_text()[-1000:]}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
