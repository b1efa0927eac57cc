"""Weight-free default matcher: OpenCV SIFT, RootSIFT descriptors, ratio + mutual test.

RootSIFT (Hellinger kernel) matches better than plain SIFT at no cost; the ratio test and
the mutual nearest-neighbour check remove most wrong putative matches before MAGSAC, which
keeps the inlier count of a wrong candidate low and so separates right from wrong.
"""

from __future__ import annotations

import cv2
import numpy as np

from astroapp.matching.base import Features, Matches


class SiftMatcher:
    """SIFT keypoints matched by nearest neighbours on RootSIFT.

    `upright=True` describes every keypoint at orientation 0 (U-SIFT): not rotation
    invariant, so coregistration turns the photo by the retrieved angle (or tries all four).
    """

    def __init__(
        self,
        name: str = "sift",
        max_features: int = 4000,
        ratio: float = 0.85,
        mutual: bool = True,
        root: bool = True,
        clahe: bool = True,
        contrast_threshold: float = 0.02,
        upright: bool = False,
    ) -> None:
        self.name = name
        self.upright = upright
        self.rotation_invariant = not upright
        self.max_features = max_features
        self.ratio = ratio
        self.mutual = mutual
        self.root = root
        self.clahe = clahe
        self.contrast_threshold = contrast_threshold
        self._make_detectors()

    def _make_detectors(self) -> None:
        self._sift = cv2.SIFT_create(
            nfeatures=self.max_features, contrastThreshold=self.contrast_threshold
        )
        self._clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)) if self.clahe else None

    def __getstate__(self) -> dict:
        """Picklable (OpenCV's detectors are not): a model holding a matcher, e.g. sift-bow,
        travels to Ray workers and the detectors are made again there."""
        return {k: v for k, v in self.__dict__.items() if k not in ("_sift", "_clahe")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._make_detectors()

    def settings(self) -> dict:
        return {
            "max_features": self.max_features,
            "ratio": self.ratio,
            "mutual": self.mutual,
            "root": self.root,
            "clahe": self.clahe,
            "contrast_threshold": self.contrast_threshold,
            "upright": self.upright,
        }

    def _gray(self, image: np.ndarray) -> np.ndarray:
        if image.ndim == 2:
            gray = image
        else:
            gray = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
        if gray.dtype != np.uint8:
            raise ValueError(f"expected a uint8 image, got {gray.dtype}")
        if self._clahe is not None:
            # Astronaut photos are hazy and low contrast next to Sentinel-2 mosaics: local
            # equalisation brings both to comparable texture before detection.
            gray = self._clahe.apply(gray)
        return gray

    def features(self, image: np.ndarray, mask: np.ndarray | None = None) -> Features:
        gray = self._gray(image)
        if self.upright:
            kps = self._sift.detect(gray, mask)
            seen: set[tuple[float, float, float]] = set()
            unique = []
            for kp in kps:  # one keypoint per location and scale once orientation is dropped
                key = (round(kp.pt[0], 1), round(kp.pt[1], 1), round(kp.size, 1))
                if key not in seen:
                    seen.add(key)
                    kp.angle = 0.0
                    unique.append(kp)
            kps, desc = self._sift.compute(gray, unique)
        else:
            kps, desc = self._sift.detectAndCompute(gray, mask)
        h, w = gray.shape[:2]
        if desc is None or len(kps) == 0:
            return Features(
                np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32), (w, h)
            )
        pts = np.array([kp.pt for kp in kps], dtype=np.float32)
        desc = desc.astype(np.float32)
        if self.root:
            desc /= np.maximum(desc.sum(axis=1, keepdims=True), 1e-7)
            desc = np.sqrt(desc)
        else:
            desc /= np.maximum(np.linalg.norm(desc, axis=1, keepdims=True), 1e-7)
        return Features(pts, np.ascontiguousarray(desc), (w, h))

    def match(self, feats_a: Features, feats_b: Features) -> Matches:
        if len(feats_a) < 2 or len(feats_b) < 2:
            return _EMPTY
        # Unit-norm descriptors: squared distance = 2 - 2 * cosine similarity. Row-wise
        # reductions on contiguous matrices (BLAS for the products) are several times faster
        # than argpartition or column-wise argmax on the same matrix.
        da, db = feats_a.descriptors, feats_b.descriptors
        back = (db @ da.T).argmax(axis=1) if self.mutual else None
        return self._match_sim(da @ db.T, back, feats_a.keypoints, feats_b.keypoints)

    def match_subsets(self, feats_a: Features, feats_b: Features,
                      subsets: list[np.ndarray]) -> list[Matches]:
        """`match(feats_a, feats_b restricted to each index array)` for many subsets of b,
        from one similarity matrix: the window search's ratio test is local to each window,
        but the descriptor products are computed once."""
        if len(feats_a) < 2:
            return [_EMPTY for _ in subsets]
        da, db = feats_a.descriptors, feats_b.descriptors
        sim_all = da @ db.T
        # b's best a does not depend on which other b are in the subset: computed once.
        back_all = (db @ da.T).argmax(axis=1) if self.mutual else None
        out = []
        for idx in subsets:
            if len(idx) < 2:
                out.append(_EMPTY)
                continue
            sim = sim_all[:, idx]
            back = back_all[idx] if back_all is not None else None
            out.append(self._match_sim(sim, back, feats_a.keypoints, feats_b.keypoints[idx]))
        return out

    def match_cells(self, feats_a: Features, feats_b: Features, cells: list[np.ndarray],
                    groups: list[np.ndarray]) -> list[Matches]:
        """`match_subsets` for subsets that are unions of disjoint cells of b: `cells` holds
        each cell's indices into b, `groups` each subset's cell numbers. The window search's
        windows overlap (half a window apart), so each b is in about four of them; here each
        a's best and second-best similarity per cell are found once, in one pass over the
        similarity matrix, and merged per window. Same matches as `match_subsets`."""
        na = len(feats_a)
        if na < 2:
            return [_EMPTY for _ in groups]
        da, db = feats_a.descriptors, feats_b.descriptors
        sim_t = db @ da.T  # b x a: a cell's rows are one contiguous gather
        back = sim_t.argmax(axis=1) if self.mutual else None
        rows = np.arange(na)
        top1 = np.full((len(cells), na), -2.0, sim_t.dtype)
        top2 = np.full((len(cells), na), -2.0, sim_t.dtype)
        arg1 = np.zeros((len(cells), na), np.int64)
        sizes = np.array([len(c) for c in cells])
        for c, idx in enumerate(cells):
            if len(idx) == 0:
                continue
            block = sim_t[idx]
            j = block.argmax(axis=0)
            top1[c] = block[j, rows]
            arg1[c] = idx[j]
            if len(idx) > 1:
                block[j, rows] = -2.0
                top2[c] = block.max(axis=0)
        out = []
        for g in groups:
            g = np.asarray(g, np.int64)
            if sizes[g].sum() < 2:
                out.append(_EMPTY)
                continue
            t1 = top1[g]
            cell = t1.argmax(axis=0)
            s_best = t1[cell, rows]
            best = arg1[g][cell, rows]
            t1[cell, rows] = -2.0
            s_second = np.maximum(t1.max(axis=0), top2[g][cell, rows])
            out.append(self._keep(rows, best, s_best, s_second, back, feats_a.keypoints,
                                  feats_b.keypoints))
        return out

    def _match_sim(self, sim: np.ndarray, back: np.ndarray | None, kp_a: np.ndarray,
                   kp_b: np.ndarray) -> Matches:
        """Ratio test (and mutual check against `back`, b's best a) on a similarity matrix
        a x b, which is overwritten."""
        rows = np.arange(sim.shape[0])
        best = sim.argmax(axis=1)
        s_best = sim[rows, best]
        sim[rows, best] = -2.0
        s_second = sim.max(axis=1)
        return self._keep(rows, best, s_best, s_second, back, kp_a, kp_b)

    def _keep(self, rows: np.ndarray, best: np.ndarray, s_best: np.ndarray,
              s_second: np.ndarray, back: np.ndarray | None, kp_a: np.ndarray,
              kp_b: np.ndarray) -> Matches:
        """Matches a -> best b that pass the ratio test and (with `back`, indexed by b's
        position in `kp_b`) the mutual check."""
        d_best = np.sqrt(np.maximum(2.0 - 2.0 * s_best, 0.0))
        d_second = np.sqrt(np.maximum(2.0 - 2.0 * s_second, 0.0))
        keep = d_best < self.ratio * d_second
        if back is not None:
            keep &= back[best] == rows
        idx_a = rows[keep]
        idx_b = best[keep]
        return Matches(kp_a[idx_a], kp_b[idx_b])


_EMPTY = Matches(np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32))
