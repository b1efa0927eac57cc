"""Regenerate the screenshots in this folder from the real app (offscreen Qt or Xvfb).

    .venv/bin/python docs/screenshots/make_screenshots.py [--weights FILE|random] [--index DIR]

Imports the bundled demo roll into a fresh catalogue, localizes it in the background (as the
user would with "Localize all"), records a few review decisions, and grabs the main window
(table), the thumbnail grid, the map and the review view.
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
    args = ap.parse_args()
    sys.path.insert(0, str(HERE.parents[1]))
    import torch

    from astroapp.geo.demo import prepare_demo
    from astroapp.gui.app import application
    from astroapp.gui.backend import load_retrieval_model
    from astroapp.gui.main_window import MainWindow
    from astroapp.gui.settings import AppSettings
    from astroapp.retrieval.weights import save_safetensors

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

        settings.index_dir = str(ensure_demo_index(load_retrieval_model(settings), show_progress=True,
                                                   out=work / "index" if weights else None))
    demo = prepare_demo(n_photos=max(args.photos, 24))

    win = MainWindow(work / "catalog.sqlite", settings=settings)
    win.resize(1500, 940)
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
    localized = [p for p in win.catalog.photos(status="localized")]
    confident = [p for p in localized if not p.status_reason]
    for p in confident[:3]:
        win.catalog.record_review(p.id, settings.reviewer_name(), "accept", "checked coastline")
    doubtful = [p for p in localized if p.status_reason]
    for p in doubtful[:1]:
        win.catalog.record_review(p.id, settings.reviewer_name(), "reject", "clouds: no match")
    win.reload()
    win.tabs.setCurrentWidget(win.table)
    win.select_photo(confident[3].id if len(confident) > 3 else localized[0].id)
    pump(0.8)
    win.grab().save(str(HERE / "main_window.png"))
    win.tabs.setCurrentWidget(win.grid)
    pump(0.8)
    win.grab().save(str(HERE / "grid.png"))
    win.tabs.setCurrentWidget(win.overview)
    pump(0.8)
    win.grab().save(str(HERE / "map.png"))
    target = confident[3] if len(confident) > 3 else (confident or localized)[0]
    win.open_review(target.id)
    win.review.note.setPlainText("river delta lines up; accepting")
    pump(0.8)
    win.grab().save(str(HERE / "review.png"))
    win.review.chk_warp.setChecked(True)
    pump(0.8)
    win.grab().save(str(HERE / "review_warped.png"))
    print(win.catalog.counts_by_status())
    win.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
