"""Regenerate the screenshots in this folder from the real app (offscreen Qt or Xvfb).

    xvfb-run -s "-screen 0 1920x1200x24" env QT_QPA_PLATFORM=xcb \
        .venv/bin/python docs/screenshots/make_screenshots.py [--weights FILE|random] [--index DIR]

Imports the bundled demo roll into a fresh catalogue, localizes it in the background (as the
user would with "Localize all new"), records a few review decisions, and grabs the main window
(table), the thumbnail grid, the map, the review view and the manual georeferencing dialog at
each size of --sizes (default 1024x700 and 1600x1000; files of the first size get a
"_1024x700" suffix). Without an X server it renders offscreen.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", default="")
    ap.add_argument("--index", default="")
    ap.add_argument("--photos", type=int, default=24)
    ap.add_argument("--max-candidates", type=int, default=3)
    ap.add_argument("--sizes", default="1024x700,1600x1000",
                    help="window sizes; the last one gets the plain file names")
    args = ap.parse_args()
    sys.path.insert(0, str(HERE.parents[1]))
    import torch

    from astroapp.checkpoints import save_safetensors
    from astroapp.geo.demo import prepare_demo
    from astroapp.gui.app import application
    from astroapp.gui.backend import load_retrieval_model
    from astroapp.gui.main_window import MainWindow
    from astroapp.gui.settings import AppSettings

    app = application([])
    work = Path(tempfile.mkdtemp(prefix="astroapp-shots-"))
    weights = args.weights
    if weights == "random":
        torch.manual_seed(0)
        rnd = load_retrieval_model(AppSettings(weights="random"))
        weights = str(work / "random.safetensors")
        save_safetensors(rnd, weights, {"architecture": rnd.name})
    settings = AppSettings(weights=weights, index_dir=args.index,
                           localize_options={"max_candidates": args.max_candidates})
    if not settings.index_dir:
        from astroapp.index.demo import ensure_demo_index

        settings.index_dir = str(ensure_demo_index(load_retrieval_model(settings),
                                                   out=work / "index" if weights else None))
    demo = prepare_demo(n_photos=max(args.photos, 24))

    win = MainWindow(work / "catalog.sqlite", settings=settings)
    sizes = [tuple(int(v) for v in size.split("x")) for size in args.sizes.split(",")]
    win.resize(*sizes[-1])
    win.show()

    def pump(seconds: float = 0.3) -> None:
        t0 = time.time()
        while time.time() - t0 < seconds:
            app.processEvents()
            time.sleep(0.01)

    def wait_job() -> None:
        while win.job is not None:
            pump(0.05)

    win.start_import(demo.photos()[: args.photos])
    wait_job()
    win.localize_all()
    wait_job()
    # a few decisions, as a reviewer would make them
    confident = win.catalog.photos(status="localized")
    doubtful = win.catalog.photos(status="review")
    for p in confident[:3]:
        win.catalog.record_review(p.id, settings.reviewer_name(), "accept", "checked coastline")
    for p in doubtful[:1]:
        win.catalog.record_review(p.id, settings.reviewer_name(), "reject", "clouds: no match")
    win.reload()
    target = (confident[3:] or confident or doubtful)[0]
    # the manual georeferencing shot: a photo to review, else another photo (nudging its footprint)
    to_review = next((p for p in doubtful[1:] + confident[:3] if p.id != target.id), None)

    for i, (w, h) in enumerate(sizes):
        suffix = "" if i == len(sizes) - 1 else f"_{w}x{h}"
        win.resize(w, h)
        pump(0.5)

        def shot(name: str, widget=None, suffix: str = suffix) -> None:
            pump(0.8)
            (widget or win).grab().save(str(HERE / f"{name}{suffix}.png"))

        win.tabs.setCurrentWidget(win.table)
        win.select_photo(target.id)
        shot("main_window")
        win.tabs.setCurrentWidget(win.grid)
        shot("grid")
        win.tabs.setCurrentWidget(win.overview)
        shot("map")
        win.open_review(target.id)
        win.review.note.setPlainText("river delta lines up; accepting")
        shot("review")
        win.review.chk_warp.setChecked(True)
        shot("review_warped")
        win.review.chk_warp.setChecked(False)
        if to_review is not None:
            win.open_review(to_review.id)
            if to_review.status == "review":
                shot("review_to_review")
            dlg = win.review.open_manual()
            if dlg is not None:
                dlg.resize(min(w, 1400), min(h, 900))
                t0 = time.time()
                while not dlg.view_ready and time.time() - t0 < 30:
                    pump(0.1)
                place_tie_points(dlg, demo, to_review)
                shot("manual_georef", dlg)
                dlg.reject()
        win.review.note.clear()
    print(win.catalog.counts_by_status())
    win.close()
    return 0


def place_tie_points(dlg, demo, photo) -> None:
    """Five tie points where the demo's ground truth puts them, as an analyst would click."""
    import numpy as np

    from astroapp.geo.render import Camera

    truth = next((t for t in demo.truth()["photos"] if t.get("file") and photo.path.endswith(t["file"])), None)
    if truth is None or "camera" not in truth:
        return
    cam = Camera.from_dict(truth["camera"])
    w, h = dlg.photo_size
    xs = np.array([0.15, 0.85, 0.5, 0.2, 0.8]) * w
    ys = np.array([0.15, 0.2, 0.5, 0.85, 0.8]) * h
    lon, lat, hit = cam.pixel_to_lonlat(xs, ys, w, h)
    for x, y, lo, la, ok in zip(xs, ys, lon, lat, hit, strict=True):
        if ok:
            dlg.add_pair((float(x), float(y)), (float(lo), float(la)))


if __name__ == "__main__":
    raise SystemExit(main())
