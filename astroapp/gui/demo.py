"""The bundled demo in the app: render the demo roll (cached) and import it, in a worker."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

from astroapp.catalog.db import Catalog
from astroapp.gui.workers import Progress


def prepare_and_import(
    catalog_path: Path, cancel: threading.Event, root: Path | None = None, n_photos: int | None = None
) -> Iterator[Progress]:
    """Generator for a `Job`: prepares the demo world and roll, then imports the roll's photos.

    Rendering happens once per data dir (then cached); re-importing adds nothing new.
    """
    from astroapp.catalog.importer import iter_import
    from astroapp.geo.demo import prepare_demo

    yield Progress("demo roll", 0, None, message="preparing the demo world and roll (first time only)…")
    kwargs = {} if n_photos is None else {"n_photos": n_photos}
    paths = prepare_demo(root, **kwargs)
    photos = paths.photos()
    report: list = []
    with Catalog(catalog_path) as catalog:
        yield from iter_import(catalog, photos, cancel=cancel, report=report)
    return report[0] if report else None
