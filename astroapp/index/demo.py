"""The bundled default index: the demo world (Blue Marble) embedded with the bundled model."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from astroapp.config import data_dir
from astroapp.index.build import build_index
from astroapp.index.errors import IndexCorruptError
from astroapp.index.manifest import (
    MANIFEST_NAME,
    fingerprint_from_manifest,
    model_fingerprint,
    read_manifest,
)
from astroapp.progress import ProgressFn

log = logging.getLogger(__name__)


def demo_index_dir(model: Any) -> Path:
    """Per world version, model and weights: new bundled weights or a new set of world blocks
    get a new index, never a mismatched one."""
    from astroapp.geo.sources.bluemarble import BLOCKS_VERSION

    fp = model_fingerprint(model)
    # a model that learns its vocabulary from the index (sift-bow) has no weights of its own
    tag = "own-vocabulary" if getattr(model, "learns_from_index", False) else fp.weights_sha256[:12]
    return data_dir() / "indexes" / f"bluemarble-v{BLOCKS_VERSION}-{fp.name}-{tag}"


def ensure_demo_index(model: Any | None = None, out: str | Path | None = None, *,
                      progress: ProgressFn | None = None, cancel: Any = None,
                      zooms: tuple[int, ...] | None = None) -> Path:
    """Build (first call; resumes if interrupted) or reuse the demo world's index; its folder.

    `model` defaults to the bundled model (`astroapp.retrieval.load_model()`); `zooms`
    restricts the Blue Marble blocks (default: all the source's zooms). `progress` (its
    "index" events) and `cancel` (a threading.Event) as for `build_index`.
    """
    from astroapp.geo.sources.bluemarble import BlueMarbleSource

    if model is None:
        from astroapp.retrieval import load_model

        model = load_model()
    folder = Path(out) if out is not None else demo_index_dir(model)
    if zooms and out is None:
        folder = folder.with_name(folder.name + "-z" + "".join(str(z) for z in zooms))
    source = BlueMarbleSource(zooms) if zooms else BlueMarbleSource()
    if (folder / MANIFEST_NAME).is_file():
        try:
            man = read_manifest(folder)
        except IndexCorruptError as exc:  # build_index below repairs it
            log.warning("the demo index is damaged (%s): repairing it", exc)
            man = None
        if man is not None:
            from astroapp.index.build import adapt_vocabulary

            adapt_vocabulary(model, folder, [source])  # sift-bow: the index's own vocabulary
            fingerprint_from_manifest(man).check_same(model_fingerprint(model),
                                                      f"the demo index in {folder}")
            if man["counts"]["sources"].get(source.source_id) == len(source):
                return folder
    log.info("building the demo world's index in %s", folder)
    report = build_index([source], model, folder, progress=progress, cancel=cancel,
                         source_specs=["bluemarble"])
    if not report.completed:
        raise InterruptedError("building the demo index was cancelled")
    return folder
