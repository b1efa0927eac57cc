"""The app's persisted settings (QSettings in an INI file inside the data dir).

An INI file in `config.data_dir()` rather than the platform registry keeps everything the
app writes in one place, and keeps tests (which point ASTROAPP_HOME at a temp dir) isolated.
"""

from __future__ import annotations

import getpass
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from PySide6.QtCore import QSettings

from astroapp import config


@dataclass
class AppSettings:
    catalog: str = ""  # empty: config.default_catalog_path()
    model: str = ""  # retrieval model name; empty: the pipeline's default (bundled)
    weights: str = ""  # weights file; empty: the model's bundled weights
    index_dir: str = ""  # tile index dir; empty: the demo world's index
    matcher: str = "sift"
    device: str = ""  # "", "cpu", "cuda": empty picks CUDA when present
    reviewer: str = ""  # empty: the OS user
    verify_shortlist: int = 100  # retrieved tiles verified geometrically before coregistration; 0: off
    demo_offered: bool = False
    # extra localization options (LocalizeSettings: k, max_candidates, size...): not persisted
    localize_options: dict | None = field(default=None, compare=False, repr=False)

    def catalog_path(self) -> Path:
        return Path(self.catalog).expanduser() if self.catalog else config.default_catalog_path()

    def reviewer_name(self) -> str:
        if self.reviewer:
            return self.reviewer
        try:
            return getpass.getuser()
        except Exception:  # noqa: BLE001 - no login name (containers): still record something
            return "unknown"


def settings_file() -> Path:
    return config.data_dir() / "settings.ini"


def _qsettings() -> QSettings:
    return QSettings(str(settings_file()), QSettings.Format.IniFormat)


def load_settings() -> AppSettings:
    qs = _qsettings()
    values = {}
    for f in fields(AppSettings):
        if f.name == "localize_options":
            continue
        raw = qs.value(f.name)
        if raw is None:
            continue
        if f.type in ("bool", bool):
            values[f.name] = str(raw).lower() in ("1", "true", "yes")
        elif f.type in ("int", int):
            try:
                values[f.name] = max(int(str(raw)), 0)
            except ValueError:
                continue  # a hand-edited file: keep the default
        else:
            values[f.name] = str(raw)
    return AppSettings(**values)


def save_settings(settings: AppSettings) -> None:
    qs = _qsettings()
    for key, value in asdict(settings).items():
        if key != "localize_options":
            qs.setValue(key, value)
    qs.sync()


def load_window_geometry() -> bytes | None:
    """The main window's geometry as Qt saved it at the last close (None the first time)."""
    raw = _qsettings().value("window/geometry")
    return bytes(raw) if raw else None


def save_window_geometry(geometry: bytes) -> None:
    qs = _qsettings()
    qs.setValue("window/geometry", geometry)
    qs.sync()


def last_dir(kind: str) -> str:
    """The folder a file dialog of this kind ("import", "export") last used ("" the first time)."""
    value = _qsettings().value(f"dirs/{kind}")
    return str(value) if value and Path(str(value)).is_dir() else ""


def remember_dir(kind: str, path: str | Path) -> None:
    """Remember the folder of a chosen file or folder for the next dialog of this kind."""
    p = Path(path)
    folder = p if p.is_dir() else p.parent
    qs = _qsettings()
    qs.setValue(f"dirs/{kind}", str(folder))
    qs.sync()
