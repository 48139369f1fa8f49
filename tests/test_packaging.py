"""The distributions as a user gets them: ``python -m build`` makes a wheel for
wechatbot and for each built-in plugin; they install into a fresh venv, and a
third-party plugin (the guide's) built against them installs beside them."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from wechatbot.testing import app_sections, ini_text

ROOT = Path(__file__).resolve().parent.parent
DISTRIBUTIONS = {".": "wechatbot", "plugins/echo": "wechatbot_echo", "plugins/keyword": "wechatbot_keyword",
                 "plugins/media": "wechatbot_media"}

pytest.importorskip("build", reason="python -m build needs the 'build' package (the test extra)")


def guide_files() -> dict[str, str]:
    """The files of the guide's plugin, as test_plugin_guide reads them from the guide."""
    spec = importlib.util.spec_from_file_location("test_plugin_guide", ROOT / "tests" / "test_plugin_guide.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.guide_files()


def run(*args: str | Path, cwd: Path, timeout: float = 300) -> str:
    result = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheels")
    for source in DISTRIBUTIONS:
        # No isolation: the build backend (setuptools) is already here; CI need not fetch it four times.
        run(sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", out, ROOT / source, cwd=out)
    return out


def test_build_makes_one_wheel_per_distribution(wheels) -> None:
    built = sorted(path.name.split("-")[0] for path in wheels.glob("*.whl"))
    assert built == sorted(DISTRIBUTIONS.values())


@pytest.mark.skipif(not (os.environ.get("CI") or os.environ.get("WECHATBOT_PACKAGING_TESTS")),
                    reason="installs every dependency from the package index into a fresh venv (half a minute): "
                           "runs in CI, or locally with WECHATBOT_PACKAGING_TESTS=1")
def test_wheels_and_a_plugin_built_against_them_install_into_a_fresh_venv(wheels, tmp_path) -> None:
    for name, text in guide_files().items():  # the guide's weather plugin, built like any third party's
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    plugin_wheels = tmp_path / "plugin-wheels"
    run(sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", plugin_wheels, tmp_path / "wechatbot-weather", cwd=tmp_path)
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    names = [name.replace("_", "-") for name in DISTRIBUTIONS.values()] + ["wechatbot-weather"]
    # The plugin's install_requires = wechatbot is met by this checkout's wheel (--find-links).
    run(python, "-m", "pip", "install", "-q", "--find-links", wheels, "--find-links", plugin_wheels, *names, cwd=tmp_path)

    location = run(python, "-c", "import wechatbot; print(wechatbot.__file__)", cwd=tmp_path)
    assert location.startswith(str(env_dir)), location  # the wheel, not this checkout
    config = tmp_path / "config.ini"
    config.write_text(ini_text(app_sections(wechatbot={"store": "memory://"})), encoding="utf-8")
    rows = json.loads(run(env_dir / "bin" / "wechatbot", "plugins", "--json", "--config", config, cwd=tmp_path))
    assert {row["name"]: row["enabled"] for row in rows} == {"echo": True, "keyword": True, "media": True, "weather": True}
