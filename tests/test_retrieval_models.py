"""Registry, preprocessing, the bundled architecture and AstroLoc/SALAD on random weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from astroapp.checkpoints import save_safetensors
from astroapp.retrieval import (
    DEFAULT_MODEL,
    WeightsError,
    available_models,
    build_model,
    load_model,
    preprocess,
)
from astroapp.retrieval.salad import SALAD, sinkhorn_with_dustbin


def test_registry_names_and_aliases():
    assert set(available_models()) == {"astroapp-small", "sift-bow", "sift-vote", "earthloc",
                                       "astroloc", "astroloc-tiny"}
    assert load_model("bundled", weights="random").name == DEFAULT_MODEL == "astroapp-small"
    with pytest.raises(ValueError, match="available: astroapp-small"):
        load_model("resnet9000", weights="random")


def test_preprocess_resizes_and_normalises():
    model = load_model("bundled", weights="random", device="cpu")
    white = np.full((300, 500, 3), 255, np.uint8)
    grey = np.full((20, 10), 128, np.uint8)  # greyscale gets 3 channels
    x = preprocess([white, grey], model)
    assert x.shape == (2, 3, *model.input_size) and x.dtype == torch.float32
    want = (1.0 - torch.tensor(model.mean)) / torch.tensor(model.std)
    assert torch.allclose(x[0, :, 5, 5], want, atol=1e-5)
    assert preprocess([], model).shape == (0, 3, *model.input_size)
    with pytest.raises(ValueError, match="image 1: expected uint8"):
        preprocess([white, white.astype(np.float32)], model)
    with pytest.raises(ValueError, match="image 0: expected an RGB"):
        preprocess([np.zeros((4, 4, 2), np.uint8)], model)


def test_bundled_forward_is_unit_norm_and_eval_mode():
    model = load_model("bundled", weights="random", device="cpu")
    assert not model.training and model.descriptor_dim == 256
    with torch.inference_mode():
        d = model(torch.randn(3, 3, *model.input_size))
    assert d.shape == (3, 256) and d.dtype == torch.float32
    assert torch.allclose(d.norm(dim=1), torch.ones(3), atol=1e-5)


def test_bundled_input_norm_ignores_per_channel_gain_and_offset(tmp_path):
    """Haze, white balance and exposure act roughly as a per-channel gain and offset: with
    `input_norm` they leave the descriptor unchanged; files from before the option load
    without it (their descriptors must not change)."""
    model = load_model("bundled", weights="random", device="cpu")
    assert model.config["input_norm"] is True
    x = torch.rand(2, 3, *model.input_size)
    gain, offset = torch.tensor([0.6, 0.7, 0.9]).view(1, 3, 1, 1), torch.tensor([0.3, 0.2, 0.1]).view(1, 3, 1, 1)
    with torch.inference_mode():
        assert torch.allclose(model(x), model(x * gain + offset), atol=1e-4)
    old = build_model("bundled", {"widths": [8, 8, 16, 16, 32], "descriptor_dim": 64,
                                  "input_size": [64, 64], "input_norm": False}).eval()
    cfg = {k: v for k, v in old.config.items() if k != "input_norm"}
    save_safetensors(old, tmp_path / "old.safetensors", {"architecture": "astroapp-small", "config": cfg})
    assert load_model("bundled", weights=tmp_path / "old.safetensors").config["input_norm"] is False


def test_bundled_weights_roundtrip_through_safetensors(tmp_path):
    model = build_model("bundled", {"widths": [8, 8, 16, 16, 32], "descriptor_dim": 64, "input_size": [64, 64]}).eval()
    path = tmp_path / "small.safetensors"
    save_safetensors(model, path, {"architecture": "astroapp-small", "config": model.config})
    loaded = load_model("bundled", weights=path, device="cpu")
    assert loaded.input_size == (64, 64) and loaded.descriptor_dim == 64
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.allclose(model(x), loaded(x), atol=1e-6)
    # a file made for another architecture is refused with the expected one named
    save_safetensors(model, tmp_path / "other.safetensors", {"architecture": "earthloc"})
    with pytest.raises(WeightsError, match="for model 'earthloc'"):
        load_model("bundled", weights=tmp_path / "other.safetensors")


def test_missing_default_weights_say_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setattr("astroapp.config.MODELS_DIR", tmp_path)
    with pytest.raises(WeightsError, match="AstroLoc.*ViT-B/14") as exc:
        load_model("astroloc")
    assert "--weights" in str(exc.value)
    with pytest.raises(WeightsError, match="astroapp model train"):
        load_model("bundled")


def test_checkpoint_loading_never_unpickles_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, path)
    with pytest.raises(WeightsError, match="cannot read"):
        load_model("earthloc", weights=path)


@pytest.mark.parametrize("name,dim", [("astroloc", 2048), ("astroloc-tiny", 512)])
def test_astroloc_forward_shapes(name, dim):
    torch.manual_seed(0)
    model = load_model(name, weights="random", device="cpu")
    assert model.descriptor_dim == dim and all(s % 14 == 0 for s in model.input_size)
    assert model.aggregator.out_dim == 256 + 64 * 128
    with torch.inference_mode():
        d = model(torch.randn(2, 3, 126, 154))  # any multiple of 14: 9x11 patches, pos-embed interpolated
        cls, fmap = model.backbone(torch.randn(1, 3, 126, 154))
    assert d.shape == (2, dim)
    assert torch.allclose(d.norm(dim=1), torch.ones(2), atol=1e-5)
    assert cls.shape == (1, model.backbone.embed_dim) and fmap.shape == (1, model.backbone.embed_dim, 9, 11)
    with pytest.raises(ValueError, match="multiples of 14"):
        model(torch.randn(1, 3, 130, 130))


def test_salad_transport_constraints():
    torch.manual_seed(0)
    salad = SALAD(in_channels=32, num_clusters=8, cluster_dim=4, token_dim=6, hidden=16, sinkhorn_iters=3).eval()
    fmap = torch.randn(2, 32, 5, 6)  # 30 features, 8 clusters
    n, m = 30, 8
    with torch.inference_mode():
        p = salad.assignment(fmap)
        assert p.shape == (2, m + 1, n)
        # every local feature distributes exactly a unit mass over clusters + dustbin
        assert torch.allclose(p.sum(dim=1), torch.ones(2, n), atol=1e-5)
        # converged plan: each cluster receives 1, the dustbin the remaining n - m
        plan = sinkhorn_with_dustbin(salad.score(fmap).flatten(2), salad.dust_bin, iters=200).exp()
        assert torch.allclose(plan.sum(dim=1), torch.ones(2, n), atol=1e-5)
        assert torch.allclose(plan[:, :m].sum(dim=2), torch.ones(2, m), atol=1e-4)
        assert torch.allclose(plan[:, m].sum(dim=1), torch.full((2,), float(n - m)), atol=1e-3)
        out = salad(torch.randn(2, 32), fmap)
    assert out.shape == (2, 6 + 8 * 4)
    assert torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)
    with pytest.raises(ValueError, match="more local features"):
        salad.assignment(torch.randn(1, 32, 2, 2))


def test_earthloc_construction_matches_methods():
    model = build_model("earthloc")
    assert model.input_size == (320, 320) and model.descriptor_dim == 4096
    assert model.aggregator.row_proj.weight.shape == (4, 400)
    assert model.aggregator.channel_proj.weight.shape == (1024, 1024)


def test_shipped_bundled_model_loads_by_default():
    from astroapp.config import MODELS_DIR

    path = MODELS_DIR / "astroapp-small.safetensors"
    assert path.is_file() and path.stat().st_size <= 30 * 2**20
    assert (MODELS_DIR / "astroapp-small.md").is_file()
    model = load_model("bundled", device="cpu")  # no weights argument: the shipped file
    assert model.weights_path == str(path)
    images = [np.full((90, 120, 3), 200, np.uint8), np.zeros((50, 50, 3), np.uint8)]
    with torch.inference_mode():
        d = model(preprocess(images, model))
    assert d.shape == (2, model.descriptor_dim)
    assert torch.allclose(d.norm(dim=1), torch.ones(2), atol=1e-5)


def test_model_cli_info_list_and_errors(capsys, tmp_path):
    import json

    from astroapp.cli import main

    assert main(["model", "list"]) == 0
    out = capsys.readouterr().out
    assert "astroapp-small" in out and "earthloc" in out and "astroloc-tiny" in out
    # a weight-free model is not reported as missing its weights
    bow = out.split("sift-bow ", 1)[1].split("\n", 2)[1]
    assert "none needed" in bow and "not found" not in bow
    assert main(["model", "info", "bundled", "--weights", "random"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["name"] == "astroapp-small" and info["descriptor_dim"] == 256
    assert main(["model", "info", "earthloc", "--weights", str(tmp_path / "missing.pt")]) == 2
    err = capsys.readouterr().err
    assert "weights file not found" in err and "best_trained_model.pt" in err
    assert main(["model", "info", "nosuchmodel"]) == 2
    assert "unknown retrieval model" in capsys.readouterr().err
