# r2env's own image: r2env and a Docker client, for CI systems that run steps in containers.
#   docker build -t r2env .                                   (BuildKit: DOCKER_BUILDKIT=1 or docker buildx)
#   docker run --rm -v /var/run/docker.sock:/var/run/docker.sock -v "$PWD:/repo" r2env build /repo
# BASE is a build argument so the image can be built from a local base where no registry is reachable
# (e.g. one made with `r2env base bootstrap`). A CA bundle for a TLS-inspecting proxy can be passed as
# `--secret id=ca,src=/etc/ssl/certs/ca-certificates.crt`: it is used by pip and never stored in a layer.
ARG BASE=debian:bookworm

FROM ${BASE} AS docker-client
# Only the client binary of Debian's docker.io: the daemon, containerd and runc stay out of the image.
RUN apt-get update -q \
 && cd /tmp && apt-get download docker.io \
 && dpkg-deb -x docker.io_*.deb /tmp/docker.io \
 && install -m 0755 /tmp/docker.io/usr/bin/docker /usr/local/bin/docker \
 && rm -rf /tmp/docker.io* /var/lib/apt/lists/*

FROM ${BASE}
ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    PATH=/opt/r2env/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# git clones remote sources; debootstrap makes a missing Debian base (it needs a privileged container).
RUN apt-get update -q \
 && apt-get install -y -q --no-install-recommends ca-certificates git python3 python3-venv debootstrap \
 && rm -rf /var/lib/apt/lists/*
COPY --from=docker-client /usr/local/bin/docker /usr/local/bin/docker
COPY pyproject.toml README.md /src/
COPY r2env /src/r2env
COPY buildpacks /src/buildpacks
RUN --mount=type=secret,id=ca,required=false \
    if [ -f /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
 && python3 -m venv /opt/r2env \
 && /opt/r2env/bin/pip install --no-cache-dir /src \
 && rm -rf /src \
 && ln -s r2env-repo2docker /opt/r2env/bin/jupyter-repo2docker \
 && r2env --version
# BuildKit through the 20.10 client's built-in support (r2env sets DOCKER_BUILDKIT=1 for its builds).
# As BinderHub's build image: `r2env jupyter-repo2docker --ref=... URL` (BinderHub passes its command as args) runs
# r2env-repo2docker, also on PATH as jupyter-repo2docker (docs/binderhub.md).
ENTRYPOINT ["r2env"]
CMD ["--help"]
