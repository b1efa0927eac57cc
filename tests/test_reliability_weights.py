"""Weights metadata (issue 15, item 10): the `config` in a safetensors header is checked
(types, bounds, and a dry build on torch's meta device against the file's own parameter
count) before any model is built: a clear WeightsError, never a TypeError traceback or an
attempt to allocate 100+ GB."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import save_file
from test_index_cli import tiles_folder  # noqa: F401 - the fixture is used below

from astroapp.retrieval import WeightsError, load_model

REPO = Path(__file__).resolve().parents[1]
GOOD = {"widths": [24, 32, 64, 128, 256], "descriptor_dim": 256, "input_size": [128, 128],
        "input_norm": True}


@pytest.fixture(scope="module")
def state():
    model = load_model("astroapp-small", weights="random", device="cpu")
    return {k: v.contiguous() for k, v in model.state_dict().items()}


def weights_file(tmp_path: Path, state, config) -> Path:
    path = tmp_path / "w.safetensors"
    text = config if isinstance(config, str) else json.dumps(config)
    save_file(state, str(path), metadata={"architecture": "astroapp-small", "config": text})
    return path


@pytest.mark.parametrize("config,why", [
    ({**GOOD, "widths": [24, 32, 64, 128, 200_000]}, "describes .* parameters, the file holds"),
    ({**GOOD, "descriptor_dim": 60_000, "widths": [24, 32, 64, 128, 65_536]},
     "describes .* parameters"),
    ({**GOOD, "descriptor_dim": 10**12}, "out of range"),
    ({**GOOD, "widths": "wide"}, "TypeError"),
    ({**GOOD, "widths": [24, -32, 64, 128, 256]}, "negative dimension"),
    ({**GOOD, "widths": [[24]]}, "widths is a list"),
    ({**GOOD, "widths": list(range(1, 1000))}, "999 entries"),
    ({**GOOD, "input_size": {"h": 1}}, "input_size is a dict"),
    ({**GOOD, "descriptor_dim": float("nan")}, "not JSON|out of range"),
    ({**GOOD, "input_size": [100_000, 100_000]}, "each side must be 8..4096"),
    ({**GOOD, "descriptor_dim": 500_000}, "descriptor size 500000"),
    ("[1, 2", "not JSON"),
    ("[1, 2]", "a list, not an object"),
    ('"text"', "a str, not an object"),
])
def test_bad_config_is_a_clear_error_before_building(tmp_path, state, config, why):
    path = weights_file(tmp_path, state, config)
    t0 = time.perf_counter()
    with pytest.raises(WeightsError, match=why) as info:
        load_model("astroapp-small", weights=path, device="cpu")
    assert str(path) in str(info.value)
    assert time.perf_counter() - t0 < 20  # nothing big was allocated or computed


def test_good_config_still_loads(tmp_path, state):
    model = load_model("astroapp-small", weights=weights_file(tmp_path, state, GOOD),
                       device="cpu")
    assert model.descriptor_dim == 256


def test_cli_reports_a_bad_config_without_traceback(tmp_path, state, tiles_folder):  # noqa: F811
    folder, _ = tiles_folder
    path = weights_file(tmp_path, state, {**GOOD, "widths": [24, 32, 64, 128, 300_000]})
    proc = subprocess.run([sys.executable, "-m", "astroapp", "index", "build", str(folder),
                           "--model", "astroapp-small", "--weights", str(path), "--out",
                           str(tmp_path / "idx"), "-q", "--device", "cpu"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "does not fit" in proc.stderr and str(path) in proc.stderr
