"""The demo roll's localizations against its ground truth (the roll's truth.json): the
figures `astroapp demo` prints under its summary.

    summary = run_scored_demo(n_photos=6)       # run_demo, then summary.truth = the score
    print(summary.format_table())
"""

from __future__ import annotations

import json
import logging
import statistics
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from astroapp.catalog import Catalog
from astroapp.geo.footprint import Footprint
from astroapp.matching.render_pairs import corner_errors_km, is_correct_localization
from astroapp.pipeline.demo import DemoProgress, DemoSummary, run_demo

log = logging.getLogger(__name__)


@dataclass
class TruthScore:
    """The demo roll's localizations against its ground truth (truth.json).

    `retrieval_correct`: the top-1 retrieved tile's footprint intersects the true footprint
    (EarthLoc's criterion), out of `retrieval_scored` photos that have candidates.
    `corner_errors_km`: every corner of every confident (accepted_auto) footprint, geodesic.
    `false_accepts`: confident footprints that are wrong by matching's own criterion
    (`is_correct_localization`: IoU with the truth < 0.5).
    """

    photos: int = 0  # demo photos with a truth record
    retrieval_scored: int = 0
    retrieval_correct: int = 0
    retrieval_correct_k: int = 0  # a right tile anywhere among the stored candidates
    candidates_k: int = 0  # how many candidates were stored per photo (the most seen)
    confident: int = 0
    confident_correct: int = 0
    false_accepts: int = 0
    corner_errors_km: list[float] = field(default_factory=list)

    @property
    def retrieval_share(self) -> float | None:
        return self.retrieval_correct / self.retrieval_scored if self.retrieval_scored else None

    @property
    def median_corner_error_km(self) -> float | None:
        return statistics.median(self.corner_errors_km) if self.corner_errors_km else None

    def rows(self) -> list[tuple[str, str]]:
        """The score as (label, value) rows of the demo summary's table; none without truth."""
        if not self.photos:
            return []
        share = self.retrieval_share
        rows = [("against truth.json", f"{self.photos} photos with ground truth"),
                ("  correct tile (top-1)",
                 "n/a (no retrieval results)" if share is None else
                 f"{self.retrieval_correct}/{self.retrieval_scored} ({100 * share:.0f} %)")]
        if share is not None and self.candidates_k > 1:
            rows.append((f"  correct tile in top-{self.candidates_k}",
                         f"{self.retrieval_correct_k}/{self.retrieval_scored} "
                         f"({100 * self.retrieval_correct_k / self.retrieval_scored:.0f} %)"))
        med = self.median_corner_error_km
        rows.append(("  median corner error",
                     "n/a (no confident footprint)" if med is None else
                     f"{med:.1f} km  ({self.confident} confident footprints)"))
        rows.append(("  false accepts", f"{self.false_accepts}/{self.confident}"))
        return rows


def score_localizations(catalog: Any, photo_ids: list[int], file_of: dict[int, str],
                        truth_by_file: dict[str, dict]) -> TruthScore:
    """Each photo's latest localization and its candidates against the truth record of its
    file (`file_of[photo_id]` -> `truth_by_file[file]`, with the true `footprint`)."""
    score = TruthScore()
    for pid in photo_ids:
        rec = truth_by_file.get(file_of.get(pid, ""))
        if rec is None:
            continue
        score.photos += 1
        truth = Footprint.from_list(rec["footprint"])
        loc = catalog.latest_localization(pid)
        if loc is None:
            continue
        cands = catalog.candidates(loc.id)
        if cands and cands[0].footprint:
            score.retrieval_scored += 1
            hits = [c.footprint is not None and Footprint.from_list(c.footprint).intersects(truth)
                    for c in cands]
            score.candidates_k = max(score.candidates_k, len(cands))
            score.retrieval_correct += hits[0]
            score.retrieval_correct_k += any(hits)
        if loc.accepted_auto and loc.footprint:
            fp = Footprint.from_list(loc.footprint)
            score.confident += 1
            score.corner_errors_km.extend(float(e) for e in corner_errors_km(fp, truth))
            if is_correct_localization(fp, truth):
                score.confident_correct += 1
            else:
                score.false_accepts += 1
    return score


def score_demo(catalog: Any, summary: DemoSummary) -> TruthScore:
    """A demo run's photos (as the catalogue holds them now) against the roll's truth.json."""
    truth: dict = json.loads(Path(summary.truth_path).read_text()) if summary.truth_path else {}
    truth_by_file = {p["file"]: p for p in truth.get("photos", [])}
    return score_localizations(catalog, summary.photo_ids, summary.photo_files, truth_by_file)


def run_scored_demo(catalog_path: str | Path | None = None, progress: DemoProgress | None = None,
                    cancel: threading.Event | None = None, **options: Any) -> DemoSummary:
    """`run_demo` (same arguments), then its photos scored against the roll's truth.json
    into `summary.truth`. Scoring is a report: when it fails the summary has no score (a
    warning is logged), never an exception."""
    summary = run_demo(catalog_path, progress, cancel, **options)
    if summary.photo_ids and summary.truth_path is not None:
        try:
            with Catalog(summary.catalog_path) as catalog:
                summary.truth = score_demo(catalog, summary)
        except Exception as exc:  # noqa: BLE001 - scoring is a report, never a crash
            log.warning("scoring against truth.json failed: %s", exc)
    return summary
