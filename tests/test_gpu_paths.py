"""The GPU paths, exercised on the CPU: half-precision descriptors (bf16/fp16 autocast) against
fp32, the torch search backend (the one used on CUDA without faiss-GPU) against faiss, and
faiss-GPU feature detection. No GPU is needed; on a CUDA machine the same code runs there."""

from __future__ import annotations

import cv2
import faiss
import numpy as np
import pytest
import torch
from test_index_support import GeneratedSource

from astroapp.index.backend import FlatSearcher, faiss_gpus
from astroapp.index.embed import autocast, embed_images, embed_rotations, preprocess_images

N = 40


@pytest.fixture(scope="module")
def model():
    from astroapp.retrieval import load_model

    torch.set_num_threads(1)
    return load_model("astroapp-small", device="cpu")  # the bundled trained weights


@pytest.fixture(scope="module")
def tiles():
    src = GeneratedSource(N)
    return [src.load(ref) for ref in src.tiles()]


def _views(tiles: list[np.ndarray]) -> list[np.ndarray]:
    """Query views: each tile turned 90 degrees, its centre 80% cropped and scaled back."""
    out = []
    for img in tiles:
        h, w = img.shape[:2]
        crop = np.rot90(img)[h // 10 : h - h // 10, w // 10 : w - w // 10]
        out.append(cv2.resize(np.ascontiguousarray(crop), (w, h), interpolation=cv2.INTER_AREA))
    return out


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_half_precision_descriptors_match_fp32(model, tiles, precision):
    batch = preprocess_images(tiles, model)
    ref = embed_rotations(model, batch, precision="fp32").numpy()
    half = embed_rotations(model, batch, precision=precision).numpy()
    assert half.dtype == np.float32 and half.shape == ref.shape == (N, 4, model.descriptor_dim)
    cos = (ref * half).sum(axis=2)
    assert cos.min() > 0.99, f"{precision}: worst cosine to fp32 {cos.min():.4f}"
    assert not np.allclose(ref, half, atol=1e-6)  # it really ran in lower precision

    # recall@1 of rotated, cropped views against the fp32 database: unchanged
    db = faiss.IndexFlatIP(ref.shape[2])
    db.add(ref.reshape(-1, ref.shape[2]))
    views = _views(tiles)
    hits = {}
    for p in ("fp32", precision):
        _, labels = db.search(embed_images(model, views, precision=p), 1)
        hits[p] = labels[:, 0] // 4 == np.arange(N)
    assert hits["fp32"].mean() >= 0.5  # the task is not trivially failed
    assert hits[precision].sum() == hits["fp32"].sum()


def test_model_precision_attribute_and_bad_value(model, tiles):
    batch = preprocess_images(tiles[:4], model)
    explicit = embed_rotations(model, batch, precision="bf16")
    model.precision = "bf16"
    try:
        assert torch.equal(embed_rotations(model, batch), explicit)
    finally:
        del model.precision
    with pytest.raises(ValueError, match="precision must be one of fp32, fp16, bf16"):
        with autocast(model, "int8"):
            pass


def test_torch_search_backend_equals_faiss():
    rng = np.random.default_rng(0)
    xb = rng.standard_normal((500, 64)).astype(np.float32)
    xb /= np.linalg.norm(xb, axis=1, keepdims=True)
    q = xb[::25] + 0.05 * rng.standard_normal((20, 64)).astype(np.float32)
    index = faiss.IndexFlatIP(64)
    index.add(xb)
    s_f, l_f = FlatSearcher(index, backend="faiss").search(q, 10)
    torch_searcher = FlatSearcher(index, backend="torch", device="cpu")
    assert torch_searcher.backend == "torch"
    s_t, l_t = torch_searcher.search(q, 10)
    assert (l_t == l_f).all()
    np.testing.assert_allclose(s_t, s_f, rtol=1e-5, atol=1e-5)


def test_faiss_gpu_feature_detection():
    if hasattr(faiss, "StandardGpuResources"):
        assert faiss_gpus() == faiss.get_num_gpus()
    else:  # faiss-cpu: the GPU search is never chosen
        assert faiss_gpus() == 0
        index = faiss.IndexFlatIP(8)
        index.add(np.eye(8, dtype=np.float32))
        assert FlatSearcher(index).backend in ("faiss", "torch")


def test_kornia_ransac_rerank_path_agrees_with_opencv():
    """Re-ranking's verification with kornia's RANSAC (the GPU option) on a real SIFT pair:
    a tile turned 90 degrees and scaled is verified with OpenCV's inlier count (+-15%) and
    the same angle; an unrelated tile is not."""
    pytest.importorskip("kornia")
    from astroapp.matching.kornia_ransac import homography_fitter
    from astroapp.pipeline.rerank import Reranker, verify

    src = GeneratedSource(2)
    a, other = (cv2.resize(src.load(r), (256, 256), interpolation=cv2.INTER_CUBIC)
                for r in src.tiles())
    photo = np.ascontiguousarray(np.rot90(cv2.resize(a, (300, 300))[22:278, 22:278]))
    rr = Reranker(ransac="kornia", size=256)
    assert rr.ransac == "kornia"
    fp, ft, fo = rr.features(photo), rr.features(a), rr.features(other)
    cv_v = verify(rr.matcher, fp, ft, 256, homography_fitter("opencv"))
    k_v = verify(rr.matcher, fp, ft, 256, homography_fitter("kornia", device="cpu"))
    assert cv_v.inliers >= 30 and cv_v.angle is not None
    assert abs(k_v.inliers - cv_v.inliers) <= 0.15 * cv_v.inliers
    assert k_v.angle == cv_v.angle
    assert verify(rr.matcher, fp, fo, 256, homography_fitter("kornia")).inliers < 15
    with pytest.raises(ValueError, match="RANSAC backend must be one of opencv, kornia"):
        Reranker(ransac="magic")


def test_gpu_check_quick_runs_every_path_on_cpu():
    """benchmarks/gpu_check.py --quick: a real subprocess, every row measured (GPU rows say
    'not measured' without CUDA), well within a CI minute."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--quick",
                           "--seconds", "0.1"], cwd=root, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    rows = [ln for ln in lines if ln.split()[:1] and ln.split()[0] in ("embed", "search", "match")]
    measured = [ln for ln in rows if "not measured" not in ln]
    for needle in ("cpu x1              fp32", "cpu x1              bf16", "faiss cpu",
                   "torch cpu", "opencv cpu", "kornia cpu"):
        hit = [ln for ln in measured if needle in ln]
        assert hit and float(hit[0].split()[-2]) > 0, (needle, proc.stdout)
    if not torch.cuda.is_available():
        assert any("cuda" in ln and "not measured" in ln for ln in rows)
