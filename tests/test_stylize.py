"""The pipeline end to end on tiny images: losses fall, range, determinism, compile-once, vmap, grad."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import pixel_config, synthetic_photo, two_region_mask
from jaxstyle.config import Config, SmoothConfig, load_config
from jaxstyle.objective import LossConfig, Objective, prepare_targets
from jaxstyle.optimize import OptimConfig, run_chunk
from jaxstyle.single import stylize, stylize_image

H, W = 32, 48
LOSS = LossConfig(content_layers=("relu2_2",), style_layers=("relu1_1", "relu2_1", "relu3_1"))


def tiny_config(**changes) -> Config:
    base = pixel_config(loss=LOSS, stage1=OptimConfig(iterations=6, chunk_size=3),
                        stage2=OptimConfig(iterations=6, chunk_size=3), smooth=SmoothConfig(radius=3),
                        max_side=64)
    return dataclasses.replace(base, **changes)


@pytest.fixture(scope="module")
def pair():
    return (synthetic_photo(H, W, 0), synthetic_photo(36, 40, 3)[..., ::-1].copy(),
            two_region_mask(H, W, 0), two_region_mask(36, 40, 3))


def terms_at(vgg16, pair, image, use_photo=True):
    c, s, cm, sm = (jnp.asarray(a) for a in pair)
    targets = prepare_targets(vgg16, c, s, cm, sm, cfg=LOSS)
    return {k: float(v) for k, v in Objective(LOSS, use_photo)(jnp.asarray(image), (vgg16, targets))[1].items()}


@pytest.mark.slow  # compile-heavy; keeps the default suite under 5 minutes on 2 cores: CI runs it via -m slow
def test_every_term_decreases_from_a_noisy_start_and_output_is_in_range(vgg16, pair):
    cfg = tiny_config(init_noise=0.2, seed=1, smooth=SmoothConfig(enabled=False))
    result = stylize(pair[0], pair[1], content_mask=pair[2], style_mask=pair[3], config=cfg, weights=vgg16)
    start = np.asarray(jnp.asarray(pair[0]) + 0.2 * jax.random.normal(jax.random.PRNGKey(1), (H, W, 3)))
    before, after = terms_at(vgg16, pair, start), terms_at(vgg16, pair, result.stages["stage2"])
    for name in ("content", "style", "tv", "photo"):
        assert after[name] < before[name], (name, before[name], after[name])
    assert result.image.shape == (H, W, 3) and result.image.dtype == np.float32
    assert result.image.min() >= 0 and result.image.max() <= 1
    assert result.history["stage1"][-1] < result.history["stage1"][0]
    assert result.status == {"stage1": "budget", "stage2": "budget"}


@pytest.mark.slow  # compile-heavy; keeps the default suite under 5 minutes on 2 cores: CI runs it via -m slow
def test_same_seed_same_result_and_smoothing_applied(vgg16, pair):
    cfg = tiny_config(init_noise=0.05, seed=3)
    a = stylize(pair[0], pair[1], config=cfg, weights=vgg16)
    b = stylize(pair[0], pair[1], config=cfg, weights=vgg16)
    np.testing.assert_array_equal(a.image, b.image)
    c = stylize(pair[0], pair[1], config=dataclasses.replace(cfg, seed=4), weights=vgg16)
    assert not np.array_equal(a.image, c.image)
    assert not np.allclose(a.image, a.stages["stage2"])  # the filter changed something


def test_each_stage_compiles_once(vgg16, pair):
    cfg = tiny_config()
    stylize(pair[0], pair[1], config=cfg, weights=vgg16)
    size = run_chunk._cache_size()
    other = synthetic_photo(H, W, 7)  # new content and style of the same shapes: no new compile
    stylize(other, pair[1][::-1].copy(), config=cfg, weights=vgg16)
    assert run_chunk._cache_size() == size
    # A fresh objective layout (different layers) compiles exactly one step per stage.
    fresh = dataclasses.replace(cfg, loss=dataclasses.replace(LOSS, content_layers=("relu3_1",)))
    stylize(pair[0], pair[1], config=fresh, weights=vgg16)
    assert run_chunk._cache_size() == size + 2


@pytest.mark.slow  # compiles the pipeline vmapped and single: CI runs it via -m slow
def test_pure_pipeline_vmaps_like_single_runs(vgg16, pair):
    cfg = tiny_config(stage1=OptimConfig(iterations=4), stage2=OptimConfig(iterations=4))
    contents = jnp.stack([jnp.asarray(pair[0]), jnp.asarray(synthetic_photo(H, W, 5))])
    styles = jnp.stack([jnp.asarray(pair[1]), jnp.asarray(pair[1])[::-1]])
    run = jax.jit(lambda c, s: stylize_image(vgg16, c, s, config=cfg))
    batched = jax.vmap(lambda c, s: stylize_image(vgg16, c, s, config=cfg))(contents, styles)
    for i in range(2):
        # float32: batched convolutions sum in another order and L-BFGS amplifies it a little;
        # 1e-3 is a quarter of one 8-bit level.
        np.testing.assert_allclose(batched[i], run(contents[i], styles[i]), rtol=0, atol=1e-3)


@pytest.mark.slow  # compile-heavy; keeps the default suite under 5 minutes on 2 cores: CI runs it via -m slow
@pytest.mark.parametrize("start", ["stage1", "smoothed"])
def test_pure_pipeline_matches_host_pipeline_for_fixed_budget(vgg16, pair, start):
    cfg = tiny_config(stage2_start=start)
    host = stylize(pair[0], pair[1], content_mask=pair[2], style_mask=pair[3], config=cfg, weights=vgg16)
    pure = jax.jit(lambda *a: stylize_image(vgg16, *a, config=cfg))(*(jnp.asarray(a) for a in pair))
    np.testing.assert_allclose(pure, host.image, atol=2e-3)


@pytest.mark.slow  # reverse-mode through the whole pipeline: CI runs it via -m slow
def test_gradient_through_the_pipeline_wrt_style_matches_finite_differences(vgg16):
    """Inside a user's jit: d(scalar of output)/d(style image), Adam with a fixed budget."""
    small = LossConfig(content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"))
    # A large adam_eps keeps Adam's first steps smooth (not lr * sign(g)), so central
    # differences are meaningful; autodiff itself does not need it.
    adam = OptimConfig(method="adam", iterations=3, learning_rate=0.02, adam_eps=1e5)
    cfg = pixel_config(loss=small, stage1=adam, stage2=adam, smooth=SmoothConfig(radius=2))
    rng = np.random.default_rng(0)
    # Noise breaks the exact max-pooling ties of smooth ramps, where VGG is not differentiable.
    content = synthetic_photo(16, 16, 0).astype(np.float64) + 0.02 * rng.standard_normal((16, 16, 3))
    style = synthetic_photo(16, 16, 2)[..., ::-1].astype(np.float64) + 0.02 * rng.standard_normal((16, 16, 3))
    content, style = np.clip(content, 0.05, 0.95), np.clip(style, 0.05, 0.95)
    d = rng.standard_normal(style.shape)
    with jax.enable_x64(True):
        w64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), vgg16)

        def scalar(st):
            out = stylize_image(w64, jnp.asarray(content), st, config=cfg)
            return jnp.sum(out * jnp.linspace(0, 1, out.size).reshape(out.shape))

        g = jax.jit(jax.grad(scalar))(jnp.asarray(style))
        assert bool(jnp.all(jnp.isfinite(g))) and float(jnp.abs(g).max()) > 0
        eps = 1e-7
        fd = (scalar(jnp.asarray(style + eps * d)) - scalar(jnp.asarray(style - eps * d))) / (2 * eps)
        np.testing.assert_allclose(jnp.vdot(g, jnp.asarray(d)), fd, rtol=1e-4)


@pytest.mark.slow  # reverse-mode through the pipeline: CI runs it via -m slow
def test_gradient_wrt_loss_weights(vgg16, pair):
    # float64 and a large adam_eps (smooth first steps), as in the style-image test above
    adam = OptimConfig(method="adam", iterations=3, learning_rate=0.02, adam_eps=1e5)
    cfg = tiny_config(stage1=adam, stage2=adam)
    with jax.enable_x64(True):
        w64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), vgg16)
        c, s = (jnp.asarray(a, jnp.float64) for a in pair[:2])

        def brightness(style_weight):
            out = stylize_image(w64, c, s, config=cfg, loss_weights={"style": style_weight})
            return jnp.mean(out)

        w = jnp.float64(100.0)
        g = jax.jit(jax.grad(brightness))(w)
        eps = 1e-3
        fd = (brightness(w + eps) - brightness(w - eps)) / (2 * eps)
        assert abs(float(fd)) > 0
        np.testing.assert_allclose(float(g), float(fd), rtol=1e-4)


def test_presets_load_and_user_overrides_apply(tmp_path):
    for name in ("paper", "default", "fast"):
        cfg = load_config(name)
        assert cfg.name == name
    paper = load_config("paper")
    assert (paper.loss.content_weight, paper.loss.style_weight, paper.loss.tv_weight) == (5.0, 100.0, 1e-3)
    assert (paper.loss.photo_weight, paper.loss.laplacian_eps) == (1e4, 1e-7)
    assert paper.loss.region_photo_scale == 1.0  # the original's lambda, masks or not
    assert (paper.stage1.iterations, paper.stage2.iterations) == (1000, 1000)
    assert (paper.backbone, paper.smooth.radius, paper.smooth.edge) == ("vgg19", 15, 0.01)
    assert paper.init == "mean_pixel"  # the original's stage-1 start
    assert load_config("default").init == load_config("fast").init == "color_transfer"
    assert not any(load_config(name).smooth.refine for name in ("paper", "default", "fast"))  # an option
    user = tmp_path / "mine.toml"
    user.write_text('base = "fast"\n[loss]\nstyle_weight = 42.0\n')
    cfg = load_config(str(user), {"stage2.iterations": 7})
    assert cfg.loss.style_weight == 42.0 and cfg.stage2.iterations == 7
    assert cfg.mode == load_config("fast").mode


def test_mean_pixel_start_is_the_originals_stage1_start():
    """neuralstyle_seg.lua starts from randn * 1e-4 in Caffe units: the mean pixel, tiny noise."""
    from jaxstyle.pipeline import CAFFE_MEAN_RGB, initial_image
    content, style = jnp.asarray(synthetic_photo(H, W, 0)), jnp.asarray(synthetic_photo(20, 24, 3))

    def start(config, key=None):
        return np.asarray(jax.jit(lambda c, s: initial_image(c, s, config=config, key=key))(content, style),
                          np.float64)

    cfg = pixel_config(init="mean_pixel", seed=5)
    x = start(cfg)
    caffe = x[..., ::-1] * 256 - np.array(CAFFE_MEAN_RGB)[::-1] * 256  # BGR x 256 minus the mean pixel
    np.testing.assert_allclose(np.array(CAFFE_MEAN_RGB)[::-1] * 256, [103.939, 116.779, 123.68])
    assert abs(caffe.mean()) < 3e-5 and 0.5e-4 < caffe.std() < 2e-4  # float32 spacing at 0.45: 3e-8 x 256
    # the default key is PRNGKey(seed): same seed, same start; another seed, another start
    np.testing.assert_array_equal(x, start(cfg, jax.random.PRNGKey(5)))
    assert not np.array_equal(x, start(dataclasses.replace(cfg, seed=6)))
    # nothing of the content survives; init_noise adds on top
    assert np.corrcoef(x.ravel(), np.asarray(content, np.float64).ravel())[0, 1] ** 2 < 1e-2
    assert 0.08 < (start(dataclasses.replace(cfg, init_noise=0.1)) - x).std() < 0.12
    np.testing.assert_array_equal(start(pixel_config()), np.asarray(content, np.float64))


def test_color_transfer_start_is_the_recoloured_content(vgg16):
    from jaxstyle.color import linear_color_transfer
    from jaxstyle.pipeline import initial_image
    content, style = jnp.asarray(synthetic_photo(H, W, 0)), jnp.asarray(synthetic_photo(20, 24, 3))
    cm, sm = jnp.asarray(two_region_mask(H, W, 0)), jnp.asarray(two_region_mask(20, 24, 3))
    x = initial_image(content, style, cm, sm, config=pixel_config(init="color_transfer"))
    np.testing.assert_array_equal(x, linear_color_transfer(content, style, cm, sm))
    assert not np.allclose(x, content, atol=0.02)
    # the host pipeline starts from it too: zero iterations and no filter return the start
    zero = tiny_config(init="color_transfer", stage1=OptimConfig(iterations=0), stage2=OptimConfig(iterations=0),
                       smooth=SmoothConfig(enabled=False))
    out = stylize(np.asarray(content), np.asarray(style), content_mask=np.asarray(cm), style_mask=np.asarray(sm),
                  config=zero, weights=vgg16)
    np.testing.assert_allclose(out.image, x, atol=1e-5)  # float32: jit vs eager eigh


@pytest.mark.slow  # a two-stage solve with the filter between (~11 s cold): CI runs it via -m slow
def test_stage2_can_start_from_the_smoothed_stage1_result(vgg16, pair):
    from jaxstyle.smoothing import smooth_local_affine
    cfg = tiny_config(stage2=OptimConfig(iterations=0), stage2_start="smoothed",
                      smooth=SmoothConfig(radius=3, edge=0.05))
    out = stylize(pair[0], pair[1], content_mask=pair[2], style_mask=pair[3], config=cfg, weights=vgg16)
    stage1 = jnp.asarray(out.stages["stage1"])
    expected = smooth_local_affine(stage1, jnp.asarray(pair[0]), radius=3, edge=0.05, eps=cfg.smooth.eps,
                                   patch_radius=cfg.smooth.patch_radius)
    # float32: the jitted filter's small linear solves round differently from eager ones (2e-4 seen)
    np.testing.assert_allclose(out.stages["stage2"], expected, atol=1e-3)
    assert np.abs(out.stages["stage2"] - out.stages["stage1"]).max() > 0.01  # the filter did something
    plain = stylize(pair[0], pair[1], content_mask=pair[2], style_mask=pair[3],
                    config=dataclasses.replace(cfg, stage2_start="stage1"), weights=vgg16)
    np.testing.assert_array_equal(plain.stages["stage1"], out.stages["stage1"])
    np.testing.assert_array_equal(plain.stages["stage2"], plain.stages["stage1"])


@pytest.mark.parametrize("side", [1, 7, 64, 255, 256, 700, 701, 4000])
def test_filter_radius_keeps_its_share_of_the_photo(side):
    s = SmoothConfig(radius=15, reference_side=700)
    r = s.radius_for((side, max(1, side // 2), 3))
    assert r >= 1 and abs(r - 15 * side / 700) <= 0.5 or (r == 1 and 15 * side / 700 < 1)
    assert s.radius_for((side // 2, side)) == r  # the longer side counts, either way round
    assert SmoothConfig(radius=15).radius_for((side, side)) == 15  # reference_side 0: fixed
    assert SmoothConfig(radius=0, reference_side=700).radius_for((side, side)) == 0  # 0 stays 0


def test_the_filter_uses_the_scaled_radius_at_the_start_of_stage2_and_at_the_end(pair):
    from jaxstyle.pipeline import Inputs, Stage, enter, finish
    content, style, cm, sm = (jnp.asarray(a) for a in pair)
    x = jnp.clip(content[..., ::-1] * 0.8 + 0.1, 0, 1)
    scaled = pixel_config(smooth=SmoothConfig(radius=6, reference_side=2 * max(H, W)), stage2_start="smoothed")
    fixed = pixel_config(smooth=SmoothConfig(radius=3), stage2_start="smoothed")
    assert scaled.smooth.radius_for(content.shape) == 3
    stage = Stage("stage2", True, OptimConfig(), smoothed_start=True)
    inputs = Inputs(content, style, cm, sm)
    np.testing.assert_array_equal(finish((), (x, content), config=scaled), finish((), (x, content), config=fixed))
    np.testing.assert_array_equal(enter(None, (inputs, {}, x), config=scaled, stage=stage)[0],
                                  enter(None, (inputs, {}, x), config=fixed, stage=stage)[0])
    wide = pixel_config(smooth=SmoothConfig(radius=6), stage2_start="smoothed")
    assert np.abs(finish((), (x, content), config=wide) - finish((), (x, content), config=fixed)).max() > 1e-3


@pytest.mark.parametrize("amount", [0.0, 0.5, 1.0])
def test_start_recolor_moves_stage2_start_toward_the_style_colours(pair, amount):
    from jaxstyle.color import linear_color_transfer
    from jaxstyle.pipeline import Inputs, Stage, enter, smooth
    content, style, cm, sm = (jnp.asarray(a) for a in pair)
    x = jnp.clip(content[..., ::-1] * 0.8 + 0.1, 0, 1)
    cfg = pixel_config(smooth=SmoothConfig(radius=3), stage2_start="smoothed", start_recolor=amount,
                       init_feather=2)
    stage = Stage("stage2", True, OptimConfig(), smoothed_start=True)
    got = np.asarray(enter(None, (Inputs(content, style, cm, sm), {}, x), config=cfg, stage=stage)[0])
    smoothed = np.asarray(smooth(x, content, cfg))
    moved = np.asarray(linear_color_transfer(jnp.asarray(smoothed), style, cm, sm, feather_radius=2))
    np.testing.assert_allclose(got, smoothed + amount * (moved - smoothed), atol=2e-5)
    # with the full amount each region's mean colour is the style region's (masks are hard here)
    if amount == 1.0:
        for k in range(cm.shape[-1]):
            inside, style_inside = np.asarray(cm[..., k]) > 0.5, np.asarray(sm[..., k]) > 0.5
            far = got[inside].mean(0) - np.asarray(style)[style_inside].mean(0)
            assert np.abs(far).max() < 0.05, (k, far)


def test_stage2_start_settings_are_checked():
    from jaxstyle.errors import JaxstyleError
    with pytest.raises(JaxstyleError, match="unknown stage2_start 'smooth'.*did you mean 'smoothed'"):
        load_config("default", {"stage2_start": "smooth"})
    with pytest.raises(JaxstyleError, match="needs a stage 1"):
        Config(mode="single", stage2_start="smoothed")
    with pytest.raises(JaxstyleError, match="start_recolor must be between 0 and 1"):
        load_config("fast", {"start_recolor": 1.5})
    with pytest.raises(JaxstyleError, match="set stage2_start = \"smoothed\""):
        load_config("fast", {"start_recolor": 0.5, "stage2_start": "stage1"})
    with pytest.raises(JaxstyleError, match="smooth.radius and smooth.reference_side must be >= 0"):
        load_config("fast", {"smooth.reference_side": -1})
    assert load_config("fast", {"smooth.radius": 0}).smooth.radius_for((256, 170)) == 0  # the filter takes 0


@pytest.mark.parametrize("key, value, message", [
    ("upsample.fit_sigma_range", 0.0, "upsample.fit_sigma_range must be > 0, got 0.0"),
    ("upsample.sigma_range", -0.1, "upsample.sigma_range must be > 0"),
    ("upsample.eps", 0.0, "upsample.eps must be > 0"),
    ("upsample.support", 0, "upsample.support must be >= 1, got 0"),
    ("upsample.tile", 0, "upsample.tile must be >= 1"),
    ("upsample.radius", -1, "upsample.radius must be >= 0"),
])
def test_upsample_settings_are_checked_when_the_config_is_read(key, value, message):
    """The last stage's settings fail when the config is read, not after the optimisation."""
    from jaxstyle.errors import JaxstyleError
    with pytest.raises(JaxstyleError, match=message):
        load_config("fast", {key: value})


def test_unknown_init_is_refused_with_a_hint():
    from jaxstyle.errors import JaxstyleError
    with pytest.raises(JaxstyleError, match="unknown init 'mean-pixel'.*did you mean 'mean_pixel'"):
        load_config("default", {"init": "mean-pixel"})
    with pytest.raises(JaxstyleError, match="init_noise must be >= 0"):
        Config(init_noise=-1.0)


def test_scaled_shape_keeps_the_aspect_and_the_network_minimum():
    """Coarse stages: `shape * scale`, raised (aspect kept, never above the shape) to MIN_SIDE a side."""
    from jaxstyle.pipeline import MIN_SIDE, scaled_shape

    rng = np.random.default_rng(0)
    for _ in range(500):
        h, w = (int(v) for v in rng.integers(MIN_SIDE, 2000, 2))
        scale = float(rng.uniform(0.05, 1.0))
        sh, sw = scaled_shape((h, w, 3), scale)
        assert min(sh, sw) >= MIN_SIDE and sh <= h and sw <= w
        assert abs(sh / sw - h / w) <= (h / w) * (1 / min(sh, sw) + 1e-9) * 1.01  # aspect within a pixel
        if min(round(h * scale), round(w * scale)) >= MIN_SIDE:
            assert (sh, sw) == (round(h * scale), round(w * scale))


@pytest.mark.slow  # compiles the whole network at new shapes (~17 s cold on 2 cores); the shapes are tested above
def test_coarse_to_fine_with_the_deepest_layers_runs_on_a_small_photo(vgg16):
    """relu5_1 at 1/16: a 20 x 28 working size has a coarse stage of 16 x 22, not 10 x 14 (which left
    relu5_1 no pixels and failed with a ZeroDivisionError)."""
    loss = LossConfig(content_layers=("relu4_2",), style_layers=("relu1_1", "relu3_1", "relu5_1"))
    cfg = tiny_config(mode="coarse_to_fine", loss=loss, stage1=OptimConfig(iterations=1, chunk_size=1),
                      stage2=OptimConfig(iterations=1, chunk_size=1))
    out = stylize(synthetic_photo(20, 28, 0), synthetic_photo(24, 20, 1), config=cfg, weights=vgg16)
    assert out.image.shape == (20, 28, 3) and np.isfinite(out.image).all()


def test_every_entry_point_refuses_a_photo_too_thin_for_the_network(vgg16):
    from jaxstyle.batch import stylize_batch
    from jaxstyle.errors import JaxstyleError

    content, thin = synthetic_photo(H, W, 0), synthetic_photo(12, 300, 1)
    with pytest.raises(JaxstyleError, match="the style image is 300x12 px at the working size"):
        stylize_image(vgg16, jnp.asarray(content), jnp.asarray(thin), config=tiny_config())
    with pytest.raises(JaxstyleError, match="the content image is 300x12 px at the working size"):
        stylize_batch(thin[None], content[None], config=tiny_config(), weights=vgg16)
    with pytest.raises(JaxstyleError, match="the content image is 64x3 px at the working size"):
        stylize(thin, content, config=tiny_config(), weights=vgg16)


def test_a_start_look_is_a_grid_runs_start_and_its_slice_a_pixel_solves(vgg16, pair):
    """`setup` given a look: a grid run starts from it where it is held and from the preset's
    own start where it is not (blended by the hold between), a pixel solve from its slice under
    the content clipped to [0, 1]; without one, from `config.init` as before."""
    from jaxstyle import grid, pipeline

    # no masks and no matting term: what `setup` does with a start does not depend on them, and
    # each op of these eager calls compiles on first use
    inputs = pipeline.Inputs(jnp.asarray(pair[0]), jnp.asarray(pair[1]), None, None)
    on_grid = load_config("default", {"loss.content_layers": ["relu2_2"], "loss.style_layers": ["relu1_1"],
                                      "loss.photo_weight": 0.0, "grid.anchor": 0.0})
    pixels = tiny_config(loss=dataclasses.replace(LOSS, photo_weight=0.0))
    look = jnp.asarray(np.random.default_rng(0).normal(0.5, 0.4, (*pipeline.grid_shape(on_grid, (H, W)), 3, 4)),
                       jnp.float32)
    start = pipeline.Start(look, jnp.ones(look.shape[:2]))
    targets, x = pipeline.setup((vgg16, None), (inputs, {}, start), config=on_grid)
    np.testing.assert_array_equal(x, look)
    assert "anchor" not in targets
    _, preset = pipeline.setup((vgg16, None), (inputs, {}, None), config=on_grid)
    hold = np.zeros(look.shape[:2], np.float32)
    hold[0], hold[1] = 1.0, 0.25  # held, partly held, not held
    _, x = pipeline.setup((vgg16, None), (inputs, {}, pipeline.Start(look, jnp.asarray(hold))), config=on_grid)
    np.testing.assert_allclose(x[0], look[0], atol=1e-6)
    np.testing.assert_allclose(x[1], 0.25 * look[1] + 0.75 * preset[1], atol=1e-6)
    np.testing.assert_allclose(x[2:], preset[2:], atol=1e-6)
    anchored = dataclasses.replace(on_grid, grid=dataclasses.replace(on_grid.grid, anchor=1e-3))
    targets, _ = pipeline.setup((vgg16, None), (inputs, {}, start), config=anchored)
    np.testing.assert_array_equal(targets["anchor"].look, look)
    coarse = pipeline.plan(anchored)[0]
    assert coarse.scale < 1  # the coarse stage's targets keep the anchor (a look has no size)
    _, small = pipeline.enter(vgg16, (inputs, targets, look), config=anchored, stage=coarse)
    np.testing.assert_array_equal(small["anchor"].look, look)
    assert small["guide"].shape[:2] != inputs.content.shape[:2]
    _, x = pipeline.setup((vgg16, None), (inputs, {}, start), config=pixels)
    sliced = np.asarray(grid.slice_grid(look, inputs.content))
    assert sliced.min() < 0 or sliced.max() > 1  # so the clip is seen
    np.testing.assert_allclose(x, np.clip(sliced, 0, 1), atol=1e-6)
    _, cold = pipeline.setup((vgg16, None), (inputs, {}, None), config=pixels)
    np.testing.assert_allclose(cold, pipeline.initial_image(*inputs, config=pixels), atol=1e-6)


def test_a_start_look_of_the_wrong_shape_is_refused_before_any_work(vgg16, pair):
    from jaxstyle.errors import JaxstyleError

    on_grid = load_config("default", {"max_side": 64})  # 32x48 at cell 8: nodes 5 x 7 x 8
    with pytest.raises(JaxstyleError, match=r"the start look has shape \[4, 7, 8, 3, 4\]; this run needs "
                                            r"\[5, 7, 8, 3, 4\] \(a look solved with the same preset"):
        stylize(pair[0], pair[1], config=on_grid, weights=vgg16, start_look=np.zeros((4, 7, 8, 3, 4)))
    with pytest.raises(JaxstyleError, match=r"the start look has shape \[2, 2, 8, 3, 3\]"):
        stylize(pair[0], pair[1], config=tiny_config(), weights=vgg16, start_look=np.zeros((2, 2, 8, 3, 3)))
    look = np.zeros((5, 7, 8, 3, 4))
    with pytest.raises(JaxstyleError,
                       match=r"the start's hold must be \[gh, gw\] = \[5, 7\] in \[0, 1\], got shape \[7, 5\]$"):
        stylize(pair[0], pair[1], config=on_grid, weights=vgg16, start_look=look, start_hold=np.ones((7, 5)))
    with pytest.raises(JaxstyleError, match="with values outside"):
        stylize(pair[0], pair[1], config=on_grid, weights=vgg16, start_look=look, start_hold=np.full((5, 7), 2.0))
