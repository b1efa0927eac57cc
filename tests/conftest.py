import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ASTROAPP_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared (reference vectors, real pairs); skips the test when it is absent."""
    if not (SHARED / "reference").is_dir():
        pytest.skip("../shared is absent (fresh clone): skipping tests that use shared data")
    return SHARED


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Never touch the user's real data dir from a test."""
    monkeypatch.setenv("ASTROAPP_HOME", str(tmp_path / "astroapp_home"))


@pytest.fixture
def open_window(qtbot):
    """Opens the app's main window, shown, over a catalogue file (default settings)."""
    from astroapp.gui.main_window import MainWindow
    from astroapp.gui.settings import AppSettings

    def open_(catalog_path):
        win = MainWindow(catalog_path, settings=AppSettings())
        qtbot.addWidget(win)
        win.show()
        return win

    return open_


@pytest.fixture
def window(open_window, tmp_path):
    """The app's main window, shown, over a new empty catalogue (test files whose window needs
    photos define their own)."""
    return open_window(tmp_path / "catalog.sqlite")


from world_blocks import earthloc_folder, world_tiles  # noqa: E402,F401 - shared fixtures
