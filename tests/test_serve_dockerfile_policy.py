"""A client's own Dockerfile may not make the engine reach the network from the daemon's host (issue 17): ADD <url>,
a `# syntax=` frontend, RUN --network/--security, and images pulled from a registry on the host's own network are
refused when the request arrives, with one line naming the file and line; ordinary Dockerfiles pass."""

from __future__ import annotations

import asyncio

import pytest
from serve_fakes import AUTH, REPO, Client, Daemon

from r2env.serve.dockerfile_policy import RefusedDockerfile, check_dockerfile_text

REFUSED = [
    ("FROM debian:bookworm\nADD http://127.0.0.1:8080/secret /s\n", "line 2: ADD http://127.0.0.1:8080/secret: downloading with ADD"),
    ("FROM debian:bookworm\nadd   HTTPS://example.org/x.tgz /x\n", "line 2: ADD HTTPS://example.org/x.tgz"),
    ("FROM debian:bookworm\nADD --chown=1 \\\n    http://169.254.169.254/latest/meta-data/ /m\n", "line 2: ADD http://169.254.169.254/"),
    ('FROM debian:bookworm\nADD ["http://127.0.0.1/s", "/s"]\n', "ADD http://127.0.0.1/s"),
    ("FROM debian:bookworm\nARG U=http://127.0.0.1/s\nADD $U /s\n", "line 3: ADD $U"),
    ("FROM debian:bookworm\nADD git@example.org:owner/repo /r\n", "ADD git@example.org:owner/repo"),
    ("# escape=`\nFROM debian:bookworm\nADD `\n  http://127.0.0.1/s /s\n", "line 3: ADD http://127.0.0.1/s"),
    ("FROM debian:bookworm\nONBUILD ADD http://127.0.0.1/s /s\n", "line 2: ADD http://127.0.0.1/s"),
    ("# syntax=docker/dockerfile:1\nFROM debian:bookworm\n", "'# syntax=' directive"),
    ("#SYNTAX = 127.0.0.1:5000/frontend\nFROM debian:bookworm\n", "'# syntax=' directive"),
    ("FROM debian:bookworm\nRUN --network=host curl http://127.0.0.1/\n", "line 2: RUN --network=host is not allowed"),
    ("FROM debian:bookworm\nRUN --security=insecure true\n", "RUN --security=insecure"),
    ("FROM 127.0.0.1:5000/secret\n", "line 1: FROM 127.0.0.1:5000/secret: images from a registry on this server's host"),
    ("FROM localhost/base\n", "FROM localhost/base"),
    ("FROM [::1]:5000/base\n", "FROM [::1]:5000/base"),
    ("FROM 10.0.0.5:5000/base\n", "FROM 10.0.0.5:5000/base"),
    ("ARG BASE=127.0.0.1:5000/x\nFROM ${BASE}\n", "FROM 127.0.0.1:5000/x"),
    ("FROM $UNSET\n", "an image named through a variable"),
    ("FROM debian:bookworm\nCOPY --from=169.254.169.254/x /a /b\n", "COPY --from 169.254.169.254/x"),
    ("FROM debian:bookworm\nRUN --mount=type=bind,from=127.0.0.1:5000/x,target=/m true\n", "RUN --mount from 127.0.0.1:5000/x"),
    ("FROM debian:bookworm\nRUN --mount=type=cache,id=r2env-pip,target=/c cp evil.whl /c/\n",
     "line 2: RUN --mount id=r2env-pip: r2env's own build caches are not available"),
    ("FROM debian:bookworm\nRUN --mount=target=/v,type=cache,id=R2ENV-APT-LISTS true\n", "RUN --mount id=R2ENV-APT-LISTS:"),
]

ACCEPTED = [
    "FROM debian:bookworm\nCOPY . /srv\nRUN pip install -r /srv/requirements.txt\n",
    "# a comment\nFROM debian:bookworm AS build\nRUN make\nFROM build\nCOPY --from=build /out /out\nCOPY --from=0 /out /o2\n",
    "ARG BASE=debian:bookworm\nFROM ${BASE}\nADD archive.tar.gz /srv/\nADD --chown=1000 local.txt /srv/\n",
    "FROM quay.io/jupyter/base-notebook:latest\nRUN --mount=type=cache,target=/root/.cache pip install numpy\n",
    "FROM debian:bookworm\n# syntax=docker/dockerfile:1 is only a comment after the first instruction\nRUN echo http://127.0.0.1/\n",
    "FROM scratch\nCOPY file /\n",
]


@pytest.mark.parametrize(("text", "message"), REFUSED)
def test_dockerfiles_that_reach_the_hosts_network_are_refused_with_the_line(text: str, message: str) -> None:
    with pytest.raises(RefusedDockerfile) as refused:
        check_dockerfile_text(text, "binder/Dockerfile")
    assert refused.value.message.startswith("binder/Dockerfile")
    assert message in refused.value.message
    assert "\n" not in refused.value.message and refused.value.hint


@pytest.mark.parametrize("text", ACCEPTED)
def test_ordinary_dockerfiles_pass(text: str) -> None:
    check_dockerfile_text(text, "Dockerfile")


def test_a_long_url_is_not_echoed_whole() -> None:
    with pytest.raises(RefusedDockerfile) as refused:
        check_dockerfile_text("FROM debian:bookworm\nADD http://127.0.0.1/" + "a" * 10_000 + " /s\n", "Dockerfile")
    assert len(refused.value.message) < 300


def test_a_submitted_repository_whose_dockerfile_adds_a_url_is_refused_before_anything_is_built(daemon: Daemon) -> None:
    daemon.mirrors.files = {"Dockerfile": "FROM debian:bookworm\nADD http://127.0.0.1:9/secret /s\n"}
    with pytest.raises(RefusedDockerfile, match=r"^Dockerfile, line 2: ADD http://127.0.0.1:9/secret"):
        asyncio.run(daemon.builds.submit(REPO, "main"))
    assert daemon.store.builds() == [] and daemon.scheduled == []
    assert list(daemon.builds.checkouts.iterdir()) == []  # the checkout made to plan it is gone

    async def scenario(client: Client) -> tuple[int, dict[str, str]]:
        response = await client.post("/api/v1/builds", headers=AUTH, json={"repo": REPO})
        return response.status, await response.json()

    status, body = daemon.run(scenario)
    assert status == 403 and body["error"].startswith("Dockerfile, line 2: ADD") and body["hint"]
