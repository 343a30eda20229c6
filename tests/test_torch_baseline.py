"""The PyTorch baseline (scripts/baselines/torch_dpst.py) computes jaxstyle's objective.

Skipped where torch is not installed (it is never a jaxstyle dependency; CI lacks it).
"""

import importlib.util
import math
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import synthetic_photo, two_region_mask  # noqa: E402
from jaxstyle import laplacian, masks  # noqa: E402
from jaxstyle.errors import JaxstyleError  # noqa: E402
from jaxstyle.objective import LOSS_TERMS, LossConfig, Objective, prepare_targets  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "baselines" / "torch_dpst.py"
H, W = 32, 40
HS, WS = 36, 44


@pytest.fixture(scope="module")
def tb():
    spec = importlib.util.spec_from_file_location("torch_dpst", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _small_region_mask(h, w):
    """Two labels, the second a 3x3 square: it vanishes (sum < 1 pixel) by relu5_1."""
    second = np.zeros((h, w), bool)
    second[5:8, 5:8] = True
    return np.stack([~second, second], -1).astype(np.float32)


def _inputs(case):
    content, style = synthetic_photo(H, W, 0), synthetic_photo(HS, WS, 1)
    rng = np.random.default_rng(7)
    image = np.clip(content + 0.05 * rng.standard_normal(content.shape), 0, 1).astype(np.float32)
    if case == "no_masks":
        return content, style, image, None, None
    style_mask = _small_region_mask(HS, WS) if case == "vanishing_style_label" else two_region_mask(HS, WS, 1)
    return content, style, image, two_region_mask(H, W, 0), style_mask


@pytest.mark.parametrize("case", ["two_labels", "no_masks", "vanishing_style_label"])
def test_objective_matches_jaxstyle(tb, vgg16, case):
    content, style, image, cm, sm = _inputs(case)
    cfg = LossConfig()
    as_jnp = (lambda a: None if a is None else jnp.asarray(a))
    targets = prepare_targets(vgg16, *map(as_jnp, (content, style, cm, sm)), cfg=cfg)
    j_total, j_terms = Objective(cfg)(jnp.asarray(image), (vgg16, targets))
    total, terms = tb.objective_value(content, style, image, cm, sm)
    assert set(terms) == set(LOSS_TERMS)
    for name in LOSS_TERMS:
        assert terms[name] > 0, name  # every term is exercised
        np.testing.assert_allclose(terms[name], float(j_terms[name]), rtol=1e-4, err_msg=name)
    np.testing.assert_allclose(total, float(j_total), rtol=1e-4)


def test_vanishing_case_exercises_the_style_fallback():
    deep = masks.propagate_masks(jnp.asarray(_small_region_mask(HS, WS)), layers=("relu5_1",))["relu5_1"]
    assert float(jnp.sum(deep[..., 1])) < 1.0


def test_laplacian_matches_jaxstyle_and_annihilates_constants(tb):
    content = synthetic_photo(12, 15, 2)
    ours = tb.matting_laplacian(content)  # float64 scipy CSR
    dense = ours.toarray()
    np.testing.assert_allclose(dense, dense.T, atol=1e-12)
    np.testing.assert_allclose(dense @ np.ones(12 * 15), 0.0, atol=1e-9)
    reference = laplacian.matting_laplacian(jnp.asarray(content)).to_dense()
    np.testing.assert_allclose(dense, reference, atol=2e-4 * np.abs(dense).max())
    # The torch CSR copy applies the same matrix.
    v = np.random.default_rng(0).standard_normal((12 * 15, 3)).astype(np.float32)
    applied = (tb.to_torch_csr(ours, "cpu") @ torch.from_numpy(v)).numpy()
    np.testing.assert_allclose(applied, dense @ v, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape", [(33, 41), (16, 16)])
def test_mask_propagation_matches_jaxstyle(tb, shape):
    mask = two_region_mask(*shape, 3)
    ours = tb.propagate_masks(torch.from_numpy(mask.transpose(2, 0, 1).copy())[None], tb.STYLE_LAYERS)
    theirs = masks.propagate_masks(jnp.asarray(mask), layers=tb.STYLE_LAYERS)
    for layer in tb.STYLE_LAYERS:
        np.testing.assert_allclose(ours[layer][0].permute(1, 2, 0).numpy(), np.asarray(theirs[layer]),
                                   atol=1e-6, err_msg=layer)


def test_run_baseline_reports_and_decreases(tb):
    content, style, _, cm, sm = _inputs("two_labels")
    result = tb.run_baseline(content, style, cm, sm, iterations=(3, 3), threads=1)
    assert {"setup_seconds", "stage1", "stage2", "final_loss", "peak_rss_mb", "image"} <= set(result)
    assert {"weights", "laplacian", "targets", "total"} <= set(result["setup_seconds"])
    for name in ("stage1", "stage2"):
        stage = result[name]
        assert {"iterations", "seconds", "seconds_per_iteration", "evaluations"} <= set(stage)
        assert stage["iterations"] == 3 and stage["evaluations"] >= 3
        assert math.isfinite(stage["final_loss"]) and stage["final_loss"] < stage["initial_loss"]
        assert stage["seconds_per_iteration"] > 0
    # Stage 2 starts where stage 1 ended, adding the photo term (> 0 off the content image).
    assert result["stage2"]["initial_loss"] > result["stage1"]["final_loss"]
    assert result["final_loss"] == result["stage2"]["final_loss"]
    assert math.isfinite(result["final_loss"]) and result["peak_rss_mb"] > 0
    assert result["image"].shape == (H, W, 3) and result["image"].min() >= 0 and result["image"].max() <= 1
    assert not np.allclose(result["image"], content)


def test_unknown_weight_gets_a_hint(tb):
    with pytest.raises(JaxstyleError, match="did you mean 'photo'"):
        tb.check_weights({"phot": 1.0})
