"""r2env/deferred_imports.py: what docker-py imports but an r2env command almost never uses loads only when used."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
import r2env.engine
assert "docker" not in sys.modules and "requests" not in sys.modules, "docker-py loaded with r2env.engine"
r2env.engine.docker.errors.ImageNotFound  # the first use loads docker-py
assert "docker.api.client" in sys.modules
assert "charset_normalizer.api" not in sys.modules and "charset_normalizer" not in sys.modules, "charset_normalizer loaded"
assert "paramiko.transport" not in sys.modules, "paramiko loaded"
import requests
response = requests.models.Response()
response._content, response.encoding = "h\\u00e9llo w\\u00f6rld, \\u00e7a va".encode("latin-1"), None
print(response.apparent_encoding)  # requests' use of it: the real module, loaded now
assert "charset_normalizer.api" in sys.modules
import charset_normalizer.api, paramiko.client  # submodules import as usual
print(paramiko.client.SSHClient.__name__)
"""


def test_the_engine_module_loads_docker_py_paramiko_and_charset_normalizer_only_when_used() -> None:
    # A fresh interpreter: this test process may have loaded both already.
    done = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    encoding, client = done.stdout.split()
    assert encoding and client == "SSHClient"
