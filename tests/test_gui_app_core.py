"""The app loads the localization core behind its splash screen: a batch's worker must not
import heavy modules later (imports hold the GIL and add long-lived objects that every full
garbage collection, which pauses the UI thread too, has to walk)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = """
import gc, sys
from astroapp.gui.app import load_core
from astroapp.gui.backend import load_retrieval_model  # as the window has imported it
from astroapp.gui.settings import AppSettings
load_core()
before = set(sys.modules)
load_retrieval_model(AppSettings())  # what a localize batch does first, in its worker
new = sorted(set(sys.modules) - before)
print("NEW", " ".join(new))
print("FROZEN", gc.get_freeze_count())
"""


@pytest.mark.slow  # the core's import in a fresh process: ~10-25 s on 2 loaded cores
def test_a_batch_imports_nothing_heavy_after_load_core():
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(" ", 1) if " " in line else (line, "") for line in out.stdout.splitlines())
    new = lines["NEW"].split()
    heavy = [m for m in new if not m.startswith("astroapp")]
    assert not heavy, f"first imported by the batch, not behind the splash screen: {heavy[:20]}"
    assert int(lines["FROZEN"]) > 100_000  # the core's objects are out of the collector's way
