"""r2env/apt_install.py: r2env's own Debian packages in one apt step, apt.txt's after them, Debian's Python apart."""

from __future__ import annotations

from r2env.apt_install import APT_GET_INSTALL, REPOSITORY_APT, apt_install, fold_own_apt
from r2env.spec import Stage, Step

USER = Step(kind="run", stage=Stage.SYSTEM, buildpack="conda", description="create user jovyan (1000)", script="useradd jovyan")
NPM_DIR = Step(kind="run", stage=Stage.SYSTEM, buildpack="postbuild", description="create /srv/npm", script="install -d /srv/npm")
POST_BUILD = Step(kind="run", stage=Stage.POST_BUILD, buildpack="postbuild", description="run postBuild", script="./postBuild")
APT_TXT = apt_install(("jq",), REPOSITORY_APT, "install apt.txt packages")
NODE = apt_install(("nodejs", "npm"), "postbuild", "install Node.js and npm")


def names(steps: list[Step]) -> list[str]:
    return [step.description for step in steps]


def test_a_conda_image_installs_its_own_packages_in_one_step_and_apt_txt_after() -> None:
    system = apt_install(("ca-certificates",), "conda", "install system packages")
    folded = fold_own_apt([system, USER, APT_TXT, NODE, NPM_DIR, POST_BUILD], None)
    assert names(folded) == ["install system packages; postbuild: install Node.js and npm", USER.description, APT_TXT.description,
                             NPM_DIR.description, POST_BUILD.description]
    assert folded[0].packages == ("ca-certificates", "nodejs", "npm")
    assert folded[0].script == f"apt-get update -q && {APT_GET_INSTALL} ca-certificates nodejs npm"
    assert (folded[0].buildpack, folded[0].secrets, folded[0].caches) == ("conda", ("ca", "proxy"), ("apt",))


def test_locked_the_folded_step_holds_every_package_to_its_pin() -> None:
    pins = {"ca-certificates": "20230311+deb12u1", "nodejs": "18.20.4+dfsg-1~deb12u2", "npm": "9.2.0~ds1-1", "libnode108": "18.20.4+dfsg-1~deb12u2"}
    system = apt_install(("ca-certificates",), "conda", "install system packages", pins)
    node = apt_install(("nodejs", "npm"), "postbuild", "install Node.js and npm", pins)
    (folded, *_) = fold_own_apt([system, USER, node], pins)
    assert folded.description == "install system packages; postbuild: install Node.js and npm (locked versions)"
    assert "ca-certificates=20230311+deb12u1 'nodejs=18.20.4+dfsg-1~deb12u2' 'npm=9.2.0~ds1-1' && rm /etc/apt/preferences.d/r2env-lock" in folded.script
    assert "Package: libnode108\\nPin: version 18.20.4+dfsg-1~deb12u2" in folded.script


def test_debian_python_stays_in_its_own_step_and_node_comes_before_apt_txt() -> None:
    python = apt_install(("ca-certificates", "python3", "python3-venv"), "python", "install system packages")
    folded = fold_own_apt([python, USER, APT_TXT, NODE, NPM_DIR], None)
    assert folded == [python, USER, NODE, APT_TXT, NPM_DIR]  # the uv stage repeats the first: uv is ready early


def test_r_and_node_share_a_step_beside_python() -> None:
    python = apt_install(("ca-certificates", "python3", "python3-venv"), "python", "install system packages")
    r = apt_install(("r-base-core", "r-base-dev"), "r", "install R 4.2.2")
    folded = fold_own_apt([python, USER, r, NODE, NPM_DIR], None)
    assert names(folded) == [python.description, USER.description, "install R 4.2.2; postbuild: install Node.js and npm", NPM_DIR.description]
    assert folded[2].packages == ("r-base-core", "r-base-dev", "nodejs", "npm")


def test_a_downloaded_deb_and_packages_apt_txt_asks_for_twice_stay_as_they_are() -> None:
    system = apt_install(("ca-certificates",), "conda", "install system packages")
    deb = Step(kind="run", stage=Stage.SYSTEM, buildpack="r", description="install R 4.4.1", script="apt-get install -y /tmp/r.deb", caches=("apt",))
    apt_txt = apt_install(("nodejs", "jq"), REPOSITORY_APT, "install apt.txt packages")
    assert fold_own_apt([system, USER, deb, apt_txt], None) == [system, USER, deb, apt_txt]


def test_nothing_to_fold_is_no_change() -> None:
    assert fold_own_apt([USER, POST_BUILD], None) == [USER, POST_BUILD]
    assert fold_own_apt([], None) == []
