"""EarthLoc checkpoint compatibility: the published key layout and torchgeo's give the reference descriptors."""

from __future__ import annotations

import json
import math
import zlib

import pytest
import torch
from safetensors.torch import save_file

from astroapp.retrieval import WeightsError, build_model, load_model, preprocess
from astroapp.retrieval.earthloc import to_torchgeo_keys


def seed_weights(keys_tsv, seed: int) -> dict[str, torch.Tensor]:
    """The recipe of earthloc_test_vectors.md, from the key list alone."""
    shapes = {}
    for line in keys_tsv.read_text().splitlines():
        if not line.strip():
            continue
        key, shape, dtype = line.split("\t")
        shapes[key] = (tuple(json.loads(shape)), dtype)
    state = {}
    for key in sorted(shapes):
        shape, dtype = shapes[key]
        g = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(key.encode()))
        if dtype == "int64":
            t = torch.zeros(shape, dtype=torch.int64)
        elif key.endswith("running_var"):
            t = 0.5 + torch.rand(shape, generator=g)
        elif key.endswith("running_mean"):
            t = 0.1 * torch.randn(shape, generator=g)
        elif len(shape) == 1 and ("bn" in key or "downsample.1" in key or ".mix.0." in key):
            t = 1 + 0.1 * torch.randn(shape, generator=g) if key.endswith("weight") else 0.1 * torch.randn(shape, generator=g)
        elif len(shape) == 1:
            t = 0.01 * torch.randn(shape, generator=g)
        else:
            fan_in = math.prod(shape[1:])
            t = torch.randn(shape, generator=g) * math.sqrt(2 / fan_in)
        state[key] = t
    return state


@pytest.fixture(scope="module")
def reference(shared_dir):
    ref = shared_dir / "reference"
    expected = json.loads((ref / "earthloc_seed0_expected.json").read_text())
    return seed_weights(ref / "earthloc_keys.tsv", expected["seed"]), expected


@pytest.fixture(scope="module")
def inputs():
    return {
        "rand_input": torch.rand(2, 3, 320, 320, generator=torch.Generator().manual_seed(0)),
        "ramp_input": torch.linspace(-2, 2, 3 * 320 * 320).reshape(1, 3, 320, 320),
    }


def _check(model, expected, inputs):
    assert model.descriptor_dim == expected["descriptor_dim"] == 4096
    with torch.inference_mode():
        for name, x in inputs.items():
            got = model(x)
            want = torch.tensor(expected[name])
            assert got.shape == want.shape
            assert (got - want).abs().max().item() <= 1e-4, name
            assert torch.allclose(got.norm(dim=1), torch.ones(len(got)), atol=1e-5)


def test_original_checkpoint_reproduces_reference(reference, inputs, tmp_path):
    state, expected = reference
    path = tmp_path / "best_trained_model.pt"
    torch.save(state, path)
    model = load_model("earthloc", weights=path, device="cpu")
    assert not model.training
    _check(model, expected, inputs)


def test_torchgeo_layout_gives_same_descriptors(reference, inputs, tmp_path):
    state, expected = reference
    renamed = to_torchgeo_keys(state)
    assert "backbone.conv1.weight" in renamed and not any(k.startswith("backbone.model.") for k in renamed)
    path = tmp_path / "earthloc-torchgeo.safetensors"
    save_file({k: v.contiguous() for k, v in renamed.items()}, str(path))
    _check(load_model("earthloc", weights=path, device="cpu"), expected, inputs)


def test_missing_and_wrong_weights_name_the_architecture(tmp_path):
    with pytest.raises(WeightsError, match="ResNet-50.*MixVPR") as exc:
        load_model("earthloc", weights=tmp_path / "nope.pt")
    assert "best_trained_model.pt" in str(exc.value) and "EarthLoc" in str(exc.value)
    wrong = tmp_path / "wrong.pt"
    torch.save({"fc.weight": torch.zeros(3, 3)}, wrong)
    with pytest.raises(WeightsError, match="missing keys"):
        load_model("earthloc", weights=wrong)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read"):
        load_model("earthloc", weights=garbage)


def test_refuses_other_input_sizes():
    import numpy as np

    model = build_model("earthloc").eval()
    x = preprocess([np.zeros((100, 150, 3), np.uint8)], model)
    assert x.shape == (1, 3, 320, 320)
    with pytest.raises(ValueError, match="320x320"):
        model(torch.zeros(1, 3, 224, 224))
