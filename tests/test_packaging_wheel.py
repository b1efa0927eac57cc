"""The wheel carries the bundled model, matcher calibrations and Leaflet, and an installed
astroapp (not the checkout) finds them through importlib.resources.

The wheel is built from a copy of the sources (no build files written into the checkout),
installed alone with `pip install --no-deps --target DIR`, and run by this venv's Python with
PYTHONPATH=DIR from a folder outside the checkout, so the dependencies come from the venv and
astroapp itself from DIR (checked: the editable install's finder must not shadow it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from setuptools import find_packages

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "astroapp", "models", "resources")


def test_pyproject_lists_every_package():
    """pyproject.toml lists packages explicitly (models/ and resources/ are mapped into the
    package); a subpackage missing from that list would be missing from the wheel."""
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = set(find_packages(str(REPO), include=["astroapp", "astroapp.*"]))
    assert found - listed == set(), "add these packages to [tool.setuptools] packages"
    assert {"astroapp.bundled.models", "astroapp.bundled.resources"} <= listed


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The folder the freshly built wheel was installed into."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", str(src),
                    "-w", str(root / "dist")], check=True, cwd=root, timeout=300)
    wheels = list((root / "dist").glob("astroapp-*.whl"))
    assert len(wheels) == 1
    target = root / "site"
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "-q", "--target", str(target),
                    str(wheels[0])], check=True, cwd=root, timeout=300)
    return target


def _run_installed(target: Path, cwd: Path, home: Path, args: list[str],
                   timeout: float) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("ASTROAPP_MODELS", "ASTROAPP_RESOURCES", "PYTHONPATH")}
    env.update(PYTHONPATH=str(target), ASTROAPP_HOME=str(home), QT_QPA_PLATFORM="offscreen")
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


PROBE = """
import json, astroapp
from astroapp import config
from astroapp.retrieval import load_model
from astroapp.matching import get_matcher
from astroapp.export.html_map import LEAFLET_DIR
model = load_model()
cal = get_matcher("sift").calibration
from astroapp.matching.coregister import dense_calibration
dense = dense_calibration()
print(json.dumps({
    "dense_calibrated": bool(dense.calibrated), "dense_threshold": dense.threshold,
    "astroapp": astroapp.__file__, "models": str(config.MODELS_DIR),
    "resources": str(config.RESOURCES_DIR), "model": model.name,
    "calibrated": bool(cal.calibrated), "threshold": cal.threshold,
    "leaflet": (LEAFLET_DIR / "leaflet.js").stat().st_size,
}))
"""


def test_installed_wheel_loads_bundled_model_calibration_and_leaflet(installed, tmp_path):
    """From outside the checkout, the wheel's own copy of every bundled file is used."""
    out = _run_installed(installed, tmp_path, tmp_path / "home", ["-c", PROBE], timeout=300)
    assert out.returncode == 0, out.stderr
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    site = installed.resolve()
    assert Path(probe["astroapp"]).resolve().is_relative_to(site), probe
    assert Path(probe["models"]).resolve() == site / "astroapp" / "bundled" / "models"
    assert Path(probe["resources"]).resolve() == site / "astroapp" / "bundled" / "resources"
    assert probe["model"] == "astroapp-small"
    assert probe["calibrated"] and probe["threshold"] > 0
    assert probe["dense_calibrated"] and 0 < probe["dense_threshold"] < 1000
    assert probe["leaflet"] > 100_000


def test_environment_overrides_still_win(tmp_path, monkeypatch):
    """ASTROAPP_MODELS / ASTROAPP_RESOURCES name other folders than the bundled ones."""
    from astroapp import config

    monkeypatch.setenv("ASTROAPP_MODELS", str(tmp_path / "m"))
    assert config.bundled_dir("astroapp.bundled.models", "ASTROAPP_MODELS") == tmp_path / "m"
    monkeypatch.delenv("ASTROAPP_MODELS")
    bundled = config.bundled_dir("astroapp.bundled.models", "ASTROAPP_MODELS")
    assert (bundled / "astroapp-small.safetensors").is_file()
    assert (bundled / "matchers" / "sift.json").is_file()
    assert (bundled / "matchers" / "dense-orientation.json").is_file()  # the dense stage's


@pytest.mark.slow
def test_installed_wheel_runs_the_demo_outside_the_checkout(installed, tmp_path):
    """`astroapp demo --no-gui` from the installed wheel localizes photos and exports
    footprints (the bug: 'no retrieval results', no footprints)."""
    home = tmp_path / "home"
    out = _run_installed(installed, tmp_path, home,
                         ["-m", "astroapp", "demo", "--no-gui", "--photos", "3"], timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    geojson = json.loads(next((home / "demo" / "exports").glob("*.geojson")).read_text())
    assert len(geojson["features"]) >= 1
    assert "no retrieval results" not in out.stdout + out.stderr
