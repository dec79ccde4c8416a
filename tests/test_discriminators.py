"""Discriminators (network_d) against traiNNer's modules, without importing traiNNer.

tests/data/discriminator_keys.json was written by tests/data/make_discriminator_keys.py from traiNNer-redux's
own classes (upstream dunet_arch.py and discriminator_arch.py, the ParagonSR2 fork's munet_arch.py): the
state-dict names and shapes, parameter counts, frozen parameters, DySample's init_pos, and the output on
deterministic weights (tests/discriminator_probe.py).
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from discriminator_probe import PROBE_SIZES, fill_deterministic, fingerprint, probe_input

from autosr.archs.discriminators import (
    DISCRIMINATORS,
    DySample,
    bilinear_sample_border,
    build_discriminator,
    double_backward_safe,
)
from autosr.errors import AutosrError

FIXTURE = json.loads((Path(__file__).parent / "data/discriminator_keys.json").read_text())
VARIANTS = [k for k in FIXTURE if not k.startswith("_")]
SMALL = {"dunet": {"num_feat": 8}, "unetdiscriminatorsn": {"num_feat": 8}, "munet": {"num_feat": 4}}
N_FEATURES = {"dunet": 9, "unetdiscriminatorsn": 9, "munet": 11}


def build(variant: str) -> torch.nn.Module:
    entry = FIXTURE[variant]
    torch.manual_seed(0)
    return build_discriminator({"type": entry["type"], **entry["options"]})


@pytest.mark.parametrize("variant", VARIANTS)
def test_state_dict_names_and_shapes_are_traiNNer_s(variant: str) -> None:
    entry = FIXTURE[variant]
    net = build(variant)
    state = net.state_dict()
    assert {k: list(v.shape) for k, v in state.items()} == entry["state_dict"]
    assert sum(p.numel() for p in net.parameters()) == entry["parameters"]
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) == entry["trainable"]
    assert sorted(k for k, p in net.named_parameters() if not p.requires_grad) == entry["frozen"]
    for key, values in entry["init_pos"].items():  # DySample's sub-pixel grid, a saved buffer
        assert state[key].flatten().tolist() == pytest.approx(values, abs=1e-7)
    # a traiNNer checkpoint's tensors load strictly (here: random values of its shapes)
    net.load_state_dict({k: torch.randn(shape) for k, shape in entry["state_dict"].items()}, strict=True)


@pytest.mark.parametrize("variant", list(PROBE_SIZES))
def test_output_equals_traiNNer_s_on_the_same_weights(variant: str) -> None:
    """Same weights (set from names), same input, eval mode, float64: the logits traiNNer's module gave."""
    net = build(variant)
    fill_deterministic(net)
    with torch.no_grad():
        got = fingerprint(net(probe_input(PROBE_SIZES[variant])))
    want = FIXTURE[variant]["probe"]
    assert got["shape"] == want["shape"]
    assert got["mean"] == pytest.approx(want["mean"], abs=1e-12)
    assert got["std"] == pytest.approx(want["std"], abs=1e-12)
    assert got["values"] == pytest.approx(want["values"], abs=1e-12)


def test_defaults_build_run_and_match_the_realistic_spec_sizes() -> None:
    """docs: dunet ~3.2 M, unetdiscriminatorsn ~4.4 M, munet ~11.3 M (11.27 M trainable)."""
    counts = {}
    for kind in DISCRIMINATORS:
        net = build_discriminator({"type": kind})
        counts[kind] = sum(p.numel() for p in net.parameters())
        assert net(torch.rand(1, 3, 16, 16)).shape == (1, 1, 16, 16)
    assert counts == {"dunet": 3_231_457, "unetdiscriminatorsn": 4_376_897, "munet": 11_295_462}
    assert FIXTURE["munet_feat32_122"]["parameters"] == 417_414  # the fork's suggestion for small generators


@pytest.mark.parametrize("kind", list(DISCRIMINATORS))
@pytest.mark.parametrize("size", [64, 96, 128])
def test_forward_sizes_and_features(kind: str, size: int) -> None:
    torch.manual_seed(0)
    net = build_discriminator({"type": kind, **SMALL[kind]}).eval()  # eval: no power step, same weights twice
    x = torch.rand(1, 3, size, size)
    with torch.no_grad():
        logits = net(x)
        again, feats = net(x, return_features=True)
    assert logits.shape == (1, 1, size, size) and torch.isfinite(logits).all()
    assert torch.equal(again, logits) and len(feats) == N_FEATURES[kind]
    assert all(f.shape[0] == 1 and f.dim() == 4 and torch.isfinite(f).all() for f in feats)
    assert feats[0].shape[-2:] == (size, size)


@pytest.mark.parametrize("kind", list(DISCRIMINATORS))
def test_features_are_what_the_logits_are_computed_from(kind: str) -> None:
    torch.manual_seed(0)
    net = build_discriminator({"type": kind, **SMALL[kind]})
    again, feats = net(torch.rand(1, 3, 32, 32), return_features=True)
    grads = torch.autograd.grad(again.sum(), feats, allow_unused=True)
    assert all(g is not None and g.abs().sum() > 0 for g in grads)


def test_type_is_matched_lower_case_and_options_override_defaults() -> None:
    for name in ("DUnet", "UNetDiscriminatorSN", "MUNet"):
        assert type(build_discriminator({"type": name})).__name__ == name
    net = build_discriminator({"type": "munet", "num_feat": 32, "ch_mult": [1, 2, 2], "slope": 0.1})
    assert sum(p.numel() for p in net.parameters()) == 417_414
    assert not build_discriminator({"type": "unetdiscriminatorsn", "skip_connection": False}).skip_connection


def test_constructors_are_keyword_only_without_kwargs() -> None:
    for cls in DISCRIMINATORS.values():
        params = inspect.signature(cls).parameters.values()
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params)
        with pytest.raises(TypeError):
            cls(3)


@pytest.mark.parametrize(
    ("opts", "words"),
    [
        ({"type": "dunett"}, ["unknown network_d.type 'dunett'", "did you mean 'dunet'"]),
        ({"type": "vggstylediscriminator"}, ["does not build", "dunet"]),
        ({}, ["network_d.type"]),
        ({"type": "dunet", "num_feats": 32}, ["network_d.num_feats", "did you mean 'num_feat'"]),
        ({"type": "dunet", "skip_connection": False}, ["network_d.skip_connection", "dunet accepts"]),
        ({"type": "dunet", "num_feat": 33}, ["even num_feat"]),
        ({"type": "munet", "ch_mult": "1,2"}, ["ch_mult", "list"]),
        ({"type": "munet", "ch_mult": [1, 0]}, ["ch_mult[1]", "≥ 1"]),
        ({"type": "munet", "num_in_ch": 1}, ["num_in_ch", "≥ 3"]),
        ({"type": "unetdiscriminatorsn", "skip_connection": "yes"}, ["true or false"]),
        ({"type": "unetdiscriminatorsn", "num_feat": 64.0}, ["integer"]),
    ],
)
def test_bad_network_d_raises_autosr_error(opts: dict, words: list[str]) -> None:
    with pytest.raises(AutosrError) as info:
        build_discriminator(opts)
    for word in words:
        assert word in str(info.value), str(info.value)


def test_u_nets_refuse_sizes_their_skips_cannot_add() -> None:
    for kind in ("dunet", "unetdiscriminatorsn"):
        with pytest.raises(AutosrError, match="multiples of 8"):
            build_discriminator({"type": kind, "num_feat": 8})(torch.rand(1, 3, 36, 36))
    assert build_discriminator({"type": "munet", "num_feat": 8})(torch.rand(1, 3, 36, 44)).shape == (1, 1, 36, 44)


def test_bilinear_sampler_equals_grid_sample_with_its_gradients() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 5, 7, generator=g, dtype=torch.float64, requires_grad=True)
    grid = (torch.rand(2, 6, 4, 2, generator=g, dtype=torch.float64) * 2.6 - 1.3).requires_grad_(True)  # some outside
    want = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    got = bilinear_sample_border(x, grid)
    assert torch.allclose(got, want, atol=1e-12)
    w = torch.randn(want.shape, generator=g, dtype=torch.float64)
    gw = torch.autograd.grad((want * w).sum(), (x, grid))
    gg = torch.autograd.grad((got * w).sum(), (x, grid))
    assert all(torch.allclose(a, b, atol=1e-10) for a, b in zip(gw, gg, strict=True))


def test_double_backward_mode_keeps_dunet_s_output_and_restores() -> None:
    torch.manual_seed(0)
    net = build_discriminator({"type": "dunet", "num_feat": 8}).double()
    for m in net.modules():
        if isinstance(m, DySample):
            torch.nn.init.normal_(m.scope.weight, std=0.5)  # offsets that move the samples
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    net.eval()
    plain = net(x)
    with double_backward_safe(net):
        assert all(m.double_backward for m in net.modules() if isinstance(m, DySample))
        safe = net(x)
    assert not any(m.double_backward for m in net.modules() if isinstance(m, DySample))
    assert torch.allclose(plain, safe, atol=1e-12)
