"""Run code in a real kernel of a running Jupyter server, over the kernel protocol (REST, then websocket channels)."""

from __future__ import annotations

import json
import uuid

import requests
import websocket


def execute(base: str, token: str, code: str, kernel_name: str = "") -> str:
    """Start a kernel (the server's default, or `kernel_name`) at the server `base` (its URL, a hub's proxied path
    included), run `code` and return its stdout; an error in the kernel fails the test with its traceback."""
    base = base.rstrip("/")
    auth = {"Authorization": f"token {token}"}
    kernel = requests.post(f"{base}/api/kernels", json={"name": kernel_name} if kernel_name else {}, headers=auth, timeout=60)
    assert kernel.status_code == 201, kernel.text
    channel = websocket.create_connection(f"{base.replace('http', 'ws', 1)}/api/kernels/{kernel.json()['id']}/channels",
                                          header=[f"{name}: {value}" for name, value in auth.items()], timeout=60)
    try:
        msg_id = uuid.uuid4().hex
        channel.send(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "test", "session": uuid.uuid4().hex, "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell",
            "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False},
        }))
        output = []
        while True:
            message = json.loads(channel.recv())
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if message["msg_type"] == "stream":
                output.append(message["content"]["text"])
            elif message["msg_type"] == "error":
                raise AssertionError("\n".join(message["content"]["traceback"]))
            elif message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
                return "".join(output)
    finally:
        channel.close()
