"""The one localization service the CLI and the GUI call for every step.

    service = LocalizationService(catalog, index="idx/", model="sift-bow", matcher="sift")
    summary = service.localize(photo_ids, progress=bars)       # the whole batch
    service.coregister_candidate(photo_id, rank=3, reviewer="ana")
    service.review(photo_id, "accept", reviewer="ana")

One photo goes photo -> candidates (`retrieve`) -> verified candidates (`rerank`) ->
coregistration (`coregister`) -> footprint stored (`store`) -> review (`review`, a chosen
candidate: `coregister_candidate`, manual tie points: `store_manual`). `localize` runs those
steps per photo (`pipeline.localize`), the others are there for a caller that drives one
step itself. The model, index and matcher are resolved once, on first use (a model is loaded
from its name and weights; no index: the demo world's, built on first use), so a service is
cheap to make. It holds no Qt and is used from one thread (its catalogue's).
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

from astroapp.matching import CoregResult, PreparedPhoto
from astroapp.matching.coregister import DEFAULT_ITERATIONS, DEFAULT_SIZE
from astroapp.pipeline import localize as steps
from astroapp.pipeline.localize import LocalizeOutcome, LocalizeSummary
from astroapp.pipeline.rerank import Reranker
from astroapp.pipeline.tiles import SourceCache
from astroapp.progress import Progress, ProgressFn, drain


@dataclass
class LocalizeSettings:
    """How to localize: the options `iter_localize` takes, with its defaults."""

    k: int = steps.DEFAULT_K
    max_candidates: int = steps.DEFAULT_MAX_CANDIDATES
    size: int = DEFAULT_SIZE
    iterations: int = DEFAULT_ITERATIONS
    use_prior: bool = True
    rerank: bool | int | Reranker = True  # True: Reranker() defaults; an int: its shortlist
    dense_candidates: int = steps.DEFAULT_DENSE_CANDIDATES  # 0: no dense stage
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_options(cls, options: dict[str, Any] | None = None, **kw: Any) -> LocalizeSettings:
        """Settings from keyword options (unknown names are refused by localization itself)."""
        merged = {**kw, **(options or {})}
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        return cls(**{k: v for k, v in merged.items() if k in known},
                   extra={k: v for k, v in merged.items() if k not in known})

    def reranker(self) -> Reranker | None:
        if self.rerank is True:
            return Reranker()
        if self.rerank is False or self.rerank is None:
            return None
        if isinstance(self.rerank, int):
            return Reranker(shortlist=self.rerank) if self.rerank > 0 else None
        return self.rerank

    def options(self) -> dict[str, Any]:
        return {"k": self.k, "max_candidates": self.max_candidates, "size": self.size,
                "iterations": self.iterations, "use_prior": self.use_prior,
                "rerank": self.reranker() or False, "dense_candidates": self.dense_candidates,
                **self.extra}


class LocalizationService:
    """Retrieve, re-rank, coregister, store, re-coregister on a chosen candidate, review."""

    def __init__(self, catalog: Any, index: Any = None, model: Any = None, matcher: Any = None,
                 settings: LocalizeSettings | None = None, *, weights: Any = None,
                 device: str | None = None) -> None:
        """`catalog`: an open Catalog; `index`: a tile index folder or TileIndex (None: the
        demo world's); `model`: a retrieval model or its name (None: the index's own model,
        else the bundled one); `weights`/`device` for a model given by name; `matcher`: a
        Matcher or its name (None: sift)."""
        self.catalog = catalog
        self.settings = settings or LocalizeSettings()
        self._index_arg, self._model_arg, self._matcher_arg = index, model, matcher
        self._weights, self._device = weights, device
        self._model: Any = None
        self._index: Any = None
        self._matcher: Any = None
        self._sources: SourceCache | None = None

    # ---- what the steps run with (resolved once) -----------------------------------------
    @property
    def model(self) -> Any:
        if self._model is None:
            self._model = steps._resolve_model(self._model_arg, self._weights, self._index_arg,
                                               self._device)
        return self._model

    def ensure_index(self, progress: ProgressFn | None = None,
                     cancel: threading.Event | None = None) -> Any:
        """The index folder (or TileIndex) to search; with none given, the demo world's for
        the model, built on first use (its "index" events to `progress`)."""
        if not self._index_arg:
            from astroapp.index.demo import ensure_demo_index

            self._index_arg = ensure_demo_index(self.model, progress=progress, cancel=cancel)
        return self._index_arg

    @property
    def index(self) -> Any:
        if self._index is None:
            self._index = steps._resolve_index(self.ensure_index(), self.model)
        return self._index

    @property
    def matcher(self) -> Any:
        if self._matcher is None:
            self._matcher = steps._resolve_matcher(self._matcher_arg)
        return self._matcher

    @property
    def sources(self) -> SourceCache:
        if self._sources is None:
            self._sources = SourceCache(self.index)
        return self._sources

    # ---- the steps -------------------------------------------------------------------------
    def photo(self, photo_id: int) -> Any:
        photo = self.catalog.get_photo(photo_id)
        if photo is None:
            raise KeyError(f"no photo with id {photo_id} in the catalogue")
        return photo

    def read_frame(self, photo_id: int) -> Any:
        """The photo decoded once for all the steps (a PhotoFrame)."""
        return steps.read_localization_frame(self.photo(photo_id), self.model, self.settings.size)

    def retrieve(self, photo_id: int, frame: Any = None, k: int | None = None) -> Any:
        """Candidate tiles for the photo (a RetrievalResult, not stored): `k` of them, by
        default as many as the re-ranking verifies."""
        if k is None:
            k = steps.shortlist_size(self.catalog, photo_id, self.index, self.settings.k,
                                     self.settings.reranker(), self.settings.use_prior)
        frame = frame if frame is not None else self.read_frame(photo_id)
        return steps.retrieve_shortlist(self.catalog, photo_id, frame, self.index, self.model, k,
                                        self.settings.use_prior)

    def rerank(self, found: Any, frame: Any, cancel: threading.Event | None = None) -> list[Any]:
        """Retrieval's candidates re-ordered by geometric verification (unchanged when the
        settings turn re-ranking off)."""
        reranker = self.settings.reranker()
        if reranker is None or not found.candidates:
            return list(found.candidates)
        return steps.rerank_candidates(reranker, frame, found, self.sources,
                                       budget=len(found.candidates), cancel=cancel)

    def coregister(self, photo_id: int, candidate: Any, frame: Any = None,
                   cancel: threading.Event | None = None, stage: str = "keypoints"
                   ) -> CoregResult:
        """Coregister the photo against one candidate's surroundings (nothing stored);
        `stage` as in `pipeline.localize.coregister_on`."""
        frame = frame if frame is not None else self.read_frame(photo_id)
        prepared = PreparedPhoto(frame.rgb, self.matcher, self.settings.size,
                                 frame_size=frame.file_size)
        return steps.coregister_on(prepared, self.sources.get(candidate.source_id), candidate,
                                   self.settings.size, iterations=self.settings.iterations,
                                   cancel=cancel, stage=stage,
                                   hints=steps.photo_hints(self.catalog, self.photo(photo_id)))

    def store(self, photo_id: int, result: CoregResult | None, candidate: Any,
              candidates: Sequence[Any], method: dict | None = None,
              timings: dict | None = None) -> int:
        """Store a coregistration as the photo's current localization (the one store step);
        returns its id. The photo's status is the caller's (`review`, `localize`)."""
        return steps._store(self.catalog, photo_id, result, candidate, list(candidates),
                            dict(method or {"stage": "coregistration",
                                            "matcher": self.matcher.name}),
                            dict(timings or {}))

    # ---- whole photos ----------------------------------------------------------------------
    def iter_localize(self, photo_ids: Sequence[int], cancel: threading.Event | None = None
                      ) -> Generator[Progress, None, LocalizeSummary]:
        """Every step for each photo, stored; yields the "localize" events (see
        `pipeline.localize.iter_localize`) and returns the LocalizeSummary."""
        return (yield from steps.iter_localize(self.catalog, photo_ids, self.index, self.model,
                                               self.matcher, cancel, **self.settings.options()))

    def localize(self, photo_ids: Sequence[int], progress: ProgressFn | None = None,
                 cancel: threading.Event | None = None) -> LocalizeSummary:
        return drain(self.iter_localize(photo_ids, cancel), progress)

    def coregister_candidate(self, photo_id: int, rank: int, reviewer: str | None = None,
                             cancel: threading.Event | None = None) -> LocalizeOutcome:
        """Coregister against the stored candidate of `rank` a reviewer chose, stored like an
        automatic result (see `pipeline.localize.coregister_candidate`)."""
        return steps.coregister_candidate(
            self.catalog, photo_id, rank, index=self._index or self._index_arg or None,
            matcher=self.matcher, size=self.settings.size, iterations=self.settings.iterations,
            reviewer=reviewer, cancel=cancel)

    # ---- review ----------------------------------------------------------------------------
    def review(self, photo_id: int, action: str, reviewer: str, note: str | None = None) -> int:
        """A reviewer's accept, reject or note (accept/reject set the status); event id."""
        return self.catalog.record_review(photo_id, reviewer, action, note)

    def review_many(self, photo_ids: Sequence[int], action: str, reviewer: str,
                    note: str | None = None) -> list[int]:
        """Accept or reject many photos at once; the ids whose status changed."""
        return self.catalog.review_many(photo_ids, reviewer, action, note)

    def undo_review(self, photo_id: int, reviewer: str) -> Any:
        """Revert the latest accept/reject; the event undone, None when there is none."""
        return self.catalog.undo_review(photo_id, reviewer)

    def store_manual(self, photo_id: int, fit: Any, analyst: str, **kw: Any) -> int:
        """Store a manual tie-point fit as the current localization and accept the photo."""
        from astroapp.pipeline.manual import store_manual

        return store_manual(self.catalog, photo_id, fit, analyst=analyst, **kw)

    def release_stuck(self, photo_ids: Sequence[int]) -> int:
        """Photos of a finished or cancelled batch still `localizing` go back to `new` (a
        batch never leaves any; this guards a crash mid-photo). How many were released."""
        if not photo_ids:
            return 0
        stuck = self.catalog.photos(status="localizing", ids=list(photo_ids))
        for photo in stuck:
            self.catalog.set_status(photo.id, "new", "localization was interrupted")
        return len(stuck)

