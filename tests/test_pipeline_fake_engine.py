"""pipeline.build against a fake engine that records calls: events, the BuildRequest, base image handling."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from r2env import __version__
from r2env.config import Settings, load_config
from r2env.errors import BaseImageError
from r2env.events import BuildEvent, Kind, Phase
from r2env.pipeline import build, plan_source
from r2env.render import env_secret, render_dockerfile

from fake_engine import BOOKWORM_ID, FakeEngine

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
HOST_VARIABLES = ("SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY",
                  "http_proxy", "https_proxy", "no_proxy", "all_proxy")
SettingsFor = Callable[..., Settings]  # settings_for(**trait overrides) -> Settings


@pytest.fixture
def settings_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SettingsFor:
    monkeypatch.chdir(tmp_path)  # no ./r2env_config.py
    for variable in HOST_VARIABLES:
        monkeypatch.delenv(variable, raising=False)

    def settings(**overrides: str) -> Settings:
        return load_config(None, {"cache_dir": str(tmp_path / "cache"), **overrides})

    return settings


def test_build_reports_detections_and_names_the_image(settings_for: SettingsFor) -> None:
    engine = FakeEngine(images={"debian:bookworm": BOOKWORM_ID})
    events = list(build(str(EXAMPLES / "requirements"), settings_for(), lambda: engine))
    messages = [e.message for e in events]
    assert "python (primary): found requirements.txt" in messages
    assert any(m.startswith("Python 3.11 (debian)") for m in messages)
    assert "base image debian:bookworm is present" in messages
    assert (events[-1].phase, events[-1].kind, events[-1].message) == (Phase.DONE, Kind.RESULT, "r2env-requirements")
    assert [name for name, _ in engine.calls] == ["image_id", "build", "image_id"]  # the last: the result's image ID


def test_build_request_carries_labels_dockerfile_and_secrets(settings_for: SettingsFor) -> None:
    settings = settings_for(index_url="https://idx.example/simple")
    engine = FakeEngine(images={"debian:bookworm": BOOKWORM_ID})
    list(build(str(EXAMPLES / "requirements"), settings, lambda: engine))
    planned = plan_source(str(EXAMPLES / "requirements"), settings)
    (request,) = engine.requests
    assert request.tag == "r2env-requirements"
    assert request.context == EXAMPLES / "requirements"
    assert dict(request.labels) == {
        "org.r2env.version": __version__,
        "org.r2env.source.url": str(EXAMPLES / "requirements"),
        "org.r2env.source.commit": planned.checkout.commit,
        "org.r2env.spec-digest": planned.spec.digest,
    }
    assert engine.dockerfiles == [render_dockerfile(planned.spec)]
    assert set(request.secrets) == {env_secret("index"), env_secret("index", public=True)}
    assert "PIP_INDEX_URL=https://idx.example/simple" in engine.secrets_during_build[0][env_secret("index")]
    assert not request.dockerfile.exists() and not any(path.exists() for path in request.secrets.values())


def test_classic_builder_gets_the_classic_dockerfile(settings_for: SettingsFor) -> None:
    engine = FakeEngine(images={"debian:bookworm": BOOKWORM_ID}, kind="classic")
    list(build(str(EXAMPLES / "requirements"), settings_for(), lambda: engine))
    assert "--mount" not in engine.dockerfiles[0]


def test_repository_dockerfile_is_built_as_is_with_user_build_args(settings_for: SettingsFor) -> None:
    engine = FakeEngine(images={"debian:bookworm": BOOKWORM_ID})
    list(build(str(EXAMPLES / "dockerfile"), settings_for(user_id="1234"), lambda: engine))
    (request,) = engine.requests
    assert request.dockerfile == EXAMPLES / "dockerfile" / "Dockerfile"
    assert dict(request.build_args) == {"NB_USER": "jovyan", "NB_UID": "1234"}
    assert dict(request.secrets) == {}


def test_a_repositorys_dockerfile_gets_the_proxies_without_credentials(settings_for: SettingsFor, monkeypatch: pytest.MonkeyPatch) -> None:
    # issue 17: a repository's own Dockerfile is repository code; Docker's predefined proxy args reach its RUN steps.
    monkeypatch.setenv("HTTPS_PROXY", "http://user:PLANTED-SECRET@proxy.example:3128")
    monkeypatch.setenv("no_proxy", "localhost,.example")
    engine = FakeEngine(images={"debian:bookworm": BOOKWORM_ID})
    list(build(str(EXAMPLES / "dockerfile"), settings_for(), lambda: engine))
    (request,) = engine.requests
    assert dict(request.build_args) == {"NB_USER": "jovyan", "NB_UID": "1000", "HTTPS_PROXY": "http://proxy.example:3128",
                                        "no_proxy": "localhost,.example"}
    assert dict(request.secrets) == {}


def test_missing_base_is_pulled(settings_for: SettingsFor) -> None:
    engine = FakeEngine(images={}, pullable={"debian:trixie"})
    events = list(build(str(EXAMPLES / "runtime-trixie"), settings_for(), lambda: engine))
    assert "pulled debian:trixie" in [e.message for e in events]
    assert [name for name, _ in engine.calls] == ["image_id", "pull", "build", "image_id"]


def test_unpullable_custom_base_is_a_base_image_error_and_nothing_is_built(settings_for: SettingsFor) -> None:
    engine = FakeEngine(images={})
    with pytest.raises(BaseImageError, match="example.org/custom:1 is not present and cannot be pulled"):
        list(build(str(EXAMPLES / "requirements"), settings_for(base_image="example.org/custom:1"), lambda: engine))
    assert engine.calls == [("image_id", "example.org/custom:1"), ("pull", "example.org/custom:1")]
    assert engine.requests == []
