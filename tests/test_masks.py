"""Semantic masks: parsing (palette, arbitrary colours, integer labels, anti-aliasing, bad
masks), propagation against a scipy reference and the real VGG shapes, jit/vmap, checks."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from jaxstyle import masks, vgg
from jaxstyle.errors import JaxstyleError

PAL = dict(masks.PALETTE)


def paint(shape, boxes, background):
    """uint8 [H, W, 3]: `background` colour, then each (y0, y1, x0, x1, rgb) box painted."""
    img = np.empty((*shape, 3), np.uint8)
    img[:] = background
    for y0, y1, x0, x1, rgb in boxes:
        img[y0:y1, x0:x1] = rgb
    return img


def blur(img, sigma):
    """Anti-aliased edges: Gaussian blur per channel, rounded back to uint8."""
    out = np.stack([ndimage.gaussian_filter(img[..., c].astype(float), sigma) for c in range(3)], -1)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def nearest_label(img, colours):
    """Reference: index of the nearest colour (Euclidean) per pixel."""
    d = ((img[:, :, None, :].astype(float) - np.array(colours, float)[None, None]) ** 2).sum(-1)
    return d.argmin(-1)


CONTENT = paint((40, 50), [(0, 20, 0, 50, PAL["white"]), (25, 38, 5, 20, PAL["red"])], PAL["black"])
STYLE = paint((30, 44), [(0, 12, 0, 44, PAL["white"]), (14, 28, 20, 40, PAL["red"])], PAL["black"])


# ----------------------------------------------------------------------------- parsing


def test_palette_masks_give_exact_one_hot_in_palette_order():
    pair = masks.parse_mask_pair(CONTENT, STYLE, content_shape=(40, 50), style_shape=(30, 44))
    assert pair.labels == ("black", "white", "red")  # the palette's order
    assert pair.notes == ()
    for img, stack in ((CONTENT, pair.content), (STYLE, pair.style)):
        assert stack.dtype == np.float32
        for k, name in enumerate(pair.labels):
            np.testing.assert_array_equal(stack[..., k], np.all(img == PAL[name], -1))
        np.testing.assert_array_equal(stack.sum(-1), 1.0)


def test_float_colour_masks_parse_like_uint8():
    a = masks.parse_mask_pair(CONTENT, STYLE)
    b = masks.parse_mask_pair(CONTENT / 255.0, (STYLE / 255.0).astype(np.float32))
    assert a.labels == b.labels
    np.testing.assert_array_equal(a.content, b.content)
    np.testing.assert_array_equal(a.style, b.style)


def test_palette_tolerance_matches_the_original_threshold():
    """Within 0.1 per channel is the same label; the noisy mask parses as the clean one."""
    rng = np.random.default_rng(0)
    noise = rng.integers(-25, 26, CONTENT.shape)  # 25/255 < 0.1
    noisy = np.clip(CONTENT.astype(int) + noise, 0, 255).astype(np.uint8)
    a = masks.parse_mask_pair(CONTENT, STYLE)
    b = masks.parse_mask_pair(noisy, STYLE)
    assert a.labels == b.labels
    np.testing.assert_array_equal(a.content, b.content)


@pytest.mark.parametrize("sigma", [0.7, 1.5, 2.0])
def test_anti_aliased_edges_go_to_the_nearest_label_and_nothing_is_dropped(sigma):
    diagonal = CONTENT.copy()
    yy, xx = np.mgrid[:40, :50]
    diagonal[(yy < 0.6 * xx) & ~np.all(CONTENT == PAL["red"], -1)] = PAL["white"]
    content, style = blur(diagonal, sigma), blur(STYLE, sigma)
    grey_like = np.all(np.abs(content.astype(int) - 128) < 25.5, -1)
    assert sigma < 1 or grey_like.sum() >= 5  # the blur makes 'grey' pixels on the white/black edges
    pair = masks.parse_mask_pair(content, style)
    assert pair.labels == ("black", "white", "red")  # no spurious grey label
    for img, stack in ((content, pair.content), (style, pair.style)):
        np.testing.assert_array_equal(stack.sum(-1), 1.0)
        ref = nearest_label(img, [PAL[n] for n in pair.labels])
        np.testing.assert_array_equal(stack.argmax(-1), ref)


def test_arbitrary_colours_are_matched_between_content_and_style():
    orange, teal, pink, violet = (255, 128, 0), (0, 128, 128), (255, 192, 203), (90, 40, 160)
    content = paint((40, 50), [(0, 15, 0, 50, teal), (20, 35, 10, 30, pink)], orange)
    # The style's colours differ slightly (within tolerance), its edges are blurred, and it
    # has a colour the content lacks.
    style = paint((36, 36), [(0, 10, 0, 36, (5, 120, 135)), (12, 24, 2, 20, (250, 199, 200)),
                             (26, 36, 20, 36, violet)], (247, 133, 6))
    style = blur(style, 1.0)
    pair = masks.parse_mask_pair(content, style)
    assert pair.labels == ("#ff8000", "#008080", "#ffc0cb")  # content colours, biggest area first
    assert pair.content.shape == (40, 50, 3) and pair.style.shape == (36, 36, 3)
    np.testing.assert_array_equal(pair.content.sum(-1), 1)
    np.testing.assert_array_equal(pair.content[..., 1], np.all(content == teal, -1))
    # Every style pixel took the nearest of the style's own four colours; violet pixels are
    # in no channel (dropped label), everything else in exactly one.
    style_colours = [(247, 133, 6), (5, 120, 135), (250, 199, 200), violet]
    ref = nearest_label(style, style_colours)
    for k in range(3):
        np.testing.assert_array_equal(pair.style[..., k], ref == k)
    assert any("only in the style" in n and "#5a28a0" in n for n in pair.notes)


def test_a_region_of_a_non_palette_colour_switches_to_arbitrary_colours():
    orange = (255, 128, 0)
    content = paint((40, 50), [(10, 30, 10, 30, orange)], PAL["black"])
    style = paint((40, 50), [(0, 20, 0, 50, orange)], PAL["black"])
    pair = masks.parse_mask_pair(content, style)
    assert pair.labels == ("black", "#ff8000")  # palette colours keep their names
    np.testing.assert_array_equal(pair.content[..., 1], np.all(content == orange, -1))


def test_integer_label_images_fallback_and_dropped_labels():
    content = np.zeros((30, 40), np.int32)
    content[:, 20:] = 2
    content[5:15, 3:13] = 1
    style = np.zeros((24, 24), np.uint16)
    style[:12] = 2
    style[18:, 18:] = 5
    pair = masks.parse_mask_pair(content, style)
    assert pair.labels == ("label 0", "label 1", "label 2")
    for k, v in enumerate((0, 1, 2)):
        np.testing.assert_array_equal(pair.content[..., k], content == v)
    np.testing.assert_array_equal(pair.style[..., 0], style == 0)
    np.testing.assert_array_equal(pair.style[..., 1], 1.0)  # missing: whole style image
    np.testing.assert_array_equal(pair.style[..., 2], style == 2)
    assert any("'label 1'" in n and "whole style image" in n for n in pair.notes)
    assert any("'label 5'" in n and "only in the style" in n for n in pair.notes)


def test_grayscale_mask_with_smoothed_edges_reads_as_two_labels():
    gray = np.zeros((40, 40), np.uint8)
    gray[:, 20:] = 255
    gray = np.round(ndimage.gaussian_filter(gray.astype(float), 1.5)).astype(np.uint8)
    assert len(np.unique(gray)) > 5
    pair = masks.parse_mask_pair(gray, gray.T.copy())
    assert pair.labels == ("label 0", "label 255")
    np.testing.assert_array_equal(pair.content[..., 1], gray >= 128)
    bool_pair = masks.parse_mask_pair(gray > 127, gray.T > 127)
    assert bool_pair.labels == ("label 0", "label 1")


def test_no_masks_means_one_region_covering_everything():
    pair = masks.parse_mask_pair(None, None, content_shape=(5, 7), style_shape=(6, 8))
    assert pair.labels == ("all",)
    np.testing.assert_array_equal(pair.content, np.ones((5, 7, 1)))
    np.testing.assert_array_equal(pair.style, np.ones((6, 8, 1)))
    padded = masks.parse_mask_pair(None, None, content_shape=(5, 7), style_shape=(6, 8), num_labels=3)
    assert padded.labels == ("all", "", "") and padded.content.shape == (5, 7, 3)
    with pytest.raises(JaxstyleError, match="content_shape and style_shape"):
        masks.parse_mask_pair(None, None)


@pytest.mark.parametrize("given", ["content", "style"])
def test_one_mask_without_the_other_is_an_error(given):
    args = (CONTENT, None) if given == "content" else (None, STYLE)
    with pytest.raises(JaxstyleError, match=f"a {given} mask was given but no"):
        masks.parse_mask_pair(*args)


def test_num_labels_pads_with_empty_channels_and_rejects_overflow():
    pair = masks.parse_mask_pair(CONTENT, STYLE, num_labels=5)
    assert pair.labels == ("black", "white", "red", "", "")
    assert pair.content.shape == (40, 50, 5) and pair.style.shape == (30, 44, 5)
    np.testing.assert_array_equal(pair.content[..., 3:], 0)
    np.testing.assert_array_equal(pair.style[..., 3:], 0)
    np.testing.assert_array_equal(pair.content.sum(-1), 1)
    with pytest.raises(JaxstyleError, match="found 3 labels .* but num_labels is 2"):
        masks.parse_mask_pair(CONTENT, STYLE, num_labels=2)


def test_padded_pairs_with_different_label_sets_batch_under_vmap():
    other = paint((40, 50), [(0, 40, 0, 25, PAL["green"])], PAL["black"])
    a = masks.parse_mask_pair(CONTENT, STYLE, num_labels=4)
    b = masks.parse_mask_pair(other, other, num_labels=4)
    assert len(b.labels) == 4 and b.labels[:2] == ("green", "black")
    batch = jnp.stack([a.content, b.content])
    out = jax.vmap(functools.partial(masks.propagate_mask, layer="relu2_1"))(batch)
    assert out.shape == (2, 20, 25, 4)


def test_aspect_ratio_mismatch_is_an_error_naming_both_sizes():
    mask = paint((480, 640), [], PAL["black"])
    with pytest.raises(JaxstyleError, match="content mask 640x480 does not match image 700x466"):
        masks.parse_mask_pair(mask, STYLE, content_shape=(466, 700))


@pytest.mark.parametrize("mask_shape", [(41, 51), (39, 50), (20, 25), (80, 100)])
def test_mask_off_by_resize_rounding_is_resized_nearest(mask_shape):
    """A mask of the same framing (1 px off, or another scale) is resized with a note."""
    h, w = mask_shape
    ref = paint((40, 50), [(0, 20, 0, 50, PAL["white"])], PAL["black"])
    mask = paint(mask_shape, [(0, round(h / 2), 0, w, PAL["white"])], PAL["black"])
    pair = masks.parse_mask_pair(mask, STYLE, content_shape=(40, 50))
    assert pair.content.shape[:2] == (40, 50)
    assert any(f"content mask {w}x{h} resized" in n for n in pair.notes)
    white = pair.content[..., pair.labels.index("white")]
    np.testing.assert_array_equal(white[:19], 1)
    np.testing.assert_array_equal(white[21:], 0)
    assert abs(white.sum() - np.all(ref == PAL["white"], -1).sum()) <= 50  # at most one row off


def test_bad_mask_inputs_are_errors():
    gray_float = np.zeros((10, 10), np.float32)
    with pytest.raises(JaxstyleError, match="integer labels"):
        masks.parse_mask_pair(gray_float, gray_float)
    with pytest.raises(JaxstyleError, match="same form"):
        masks.parse_mask_pair(CONTENT, np.zeros((30, 44), np.uint8))
    with pytest.raises(JaxstyleError, match=r"shape \(40, 50, 4\)"):
        masks.parse_mask_pair(np.zeros((40, 50, 4), np.uint8), STYLE)
    with pytest.raises(JaxstyleError, match=r"in \[0, 1\]"):
        masks.parse_mask_pair(CONTENT * 2.0, STYLE)


# ----------------------------------------------------------------------------- propagation


def reference_propagation(mask, arch, count_include_pad):
    """numpy/scipy: 3x3 box filter with zero padding at each conv, 2x2 mean at each pool."""
    out, m = {}, mask.astype(np.float64)
    count = None
    for spec in vgg.layer_specs(arch):
        if spec.kind == "conv":
            box = ndimage.uniform_filter(m, size=(3, 3, 1), mode="constant", cval=0.0)
            if not count_include_pad:
                count = ndimage.uniform_filter(np.ones(m.shape[:2]), size=3, mode="constant")
                box = box / count[..., None]
            m = box
        elif spec.kind == "pool":
            h, w = m.shape[0] // 2, m.shape[1] // 2
            m = m[:2 * h, :2 * w].reshape(h, 2, w, 2, -1).mean(axis=(1, 3))
        out[spec.name] = m
    return out


@pytest.mark.parametrize("count_include_pad", [True, False])
def test_propagation_matches_reference_at_every_layer(count_include_pad):
    rng = np.random.default_rng(1)
    mask = rng.random((37, 45, 2)).astype(np.float32)
    names = vgg.layer_names("vgg19")
    ours = masks.propagate_masks(mask, arch="vgg19", layers=names, count_include_pad=count_include_pad)
    ref = reference_propagation(mask, "vgg19", count_include_pad)
    assert tuple(ours) == names
    for name in names:
        np.testing.assert_allclose(np.asarray(ours[name]), ref[name], rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("arch", ["vgg16", "vgg19"])
@pytest.mark.parametrize("shape", [(37, 45), (33, 51), (29, 63), (64, 47)])
def test_propagated_shapes_equal_vgg_activation_shapes(arch, shape):
    """Shapes only (jax.eval_shape): random-weight VGG activations vs propagated masks."""
    names = vgg.layer_names(arch)
    params = jax.eval_shape(lambda key: vgg.init_params(key, arch), jax.random.PRNGKey(0))
    acts = jax.eval_shape(lambda p, im: vgg.features(vgg.VGGWeights(params=p, arch=arch), im, names),
                          params, jax.ShapeDtypeStruct((*shape, 3), jnp.float32))
    props = jax.eval_shape(lambda m: masks.propagate_masks(m, arch=arch, layers=names),
                           jax.ShapeDtypeStruct((*shape, 3), jnp.float32))
    for name in names:
        assert props[name].shape[:2] == acts[name].shape[:2], name
        assert props[name].shape[2] == 3


def test_one_convolution_of_ones_counts_the_padding_like_the_original():
    out = np.asarray(masks.propagate_mask(jnp.ones((5, 6, 1)), layer="conv1_1"))[..., 0]
    assert out[0, 0] == pytest.approx(4 / 9) and out[-1, -1] == pytest.approx(4 / 9)
    assert out[0, 2] == pytest.approx(6 / 9) and out[2, 0] == pytest.approx(6 / 9)
    np.testing.assert_allclose(out[1:-1, 1:-1], 1.0, rtol=1e-6)


def test_all_ones_stays_one_in_the_interior_and_a_partition_stays_one_everywhere():
    deep = masks.propagate_mask(jnp.ones((128, 160, 1)), layer="relu4_2")
    assert deep.shape == (16, 20, 1)
    np.testing.assert_allclose(np.asarray(deep)[5:-5, 5:-5], 1.0, rtol=1e-5)
    assert float(deep[0, 0, 0]) < 0.5  # the padding fades the border
    # Without the padding in the count a one-hot stack sums to 1 at every layer.
    pair = masks.parse_mask_pair(CONTENT, STYLE)
    for m in masks.propagate_masks(pair.content, layers=vgg.layer_names("vgg16"),
                                   count_include_pad=False).values():
        np.testing.assert_allclose(np.asarray(m).sum(-1), 1.0, rtol=1e-5)


def test_region_mass_divides_by_four_at_each_pooling():
    mask = np.zeros((64, 64, 1), np.float32)
    mask[24:40, 20:44] = 1.0  # far enough from the border that no weight leaks
    out = masks.propagate_masks(mask, layers=("relu1_1", "pool1", "relu3_1"))
    assert float(out["relu1_1"].sum()) == pytest.approx(16 * 24, rel=1e-5)
    assert float(out["pool1"].sum()) == pytest.approx(16 * 24 / 4, rel=1e-5)
    assert float(out["relu3_1"].sum()) == pytest.approx(16 * 24 / 16, rel=1e-5)


def test_propagation_under_jit_vmap_and_jvp():
    rng = np.random.default_rng(2)
    batch = jnp.asarray(rng.random((3, 35, 41, 2)), jnp.float32)
    f = functools.partial(masks.propagate_masks, arch="vgg16", layers=("relu1_1", "relu3_1", "relu5_1"))
    eager = [f(m) for m in batch]
    jitted = jax.jit(f)(batch[0])
    mapped = jax.vmap(f)(batch)
    for name in ("relu1_1", "relu3_1", "relu5_1"):
        np.testing.assert_allclose(np.asarray(jitted[name]), np.asarray(eager[0][name]), rtol=1e-6)
        np.testing.assert_allclose(np.asarray(mapped[name]),
                                   np.stack([np.asarray(e[name]) for e in eager]), rtol=1e-6)
    # Propagation is linear: its derivative in a direction is the propagated direction.
    _, tangent = jax.jvp(f, (batch[0],), (batch[1],))
    np.testing.assert_allclose(np.asarray(tangent["relu3_1"]), np.asarray(eager[1]["relu3_1"]), rtol=1e-6)


def test_propagation_rejects_unknown_layers_and_batches():
    with pytest.raises(JaxstyleError, match="did you mean 'relu4_2'"):
        masks.propagate_mask(jnp.ones((8, 8, 1)), layer="relu4-2")
    with pytest.raises(JaxstyleError, match="use jax.vmap"):
        masks.propagate_mask(jnp.ones((2, 8, 8, 1)))


# ----------------------------------------------------------------------------- checks


def test_a_region_that_vanishes_after_downsampling_is_named_with_its_layer():
    content = paint((64, 64), [(30, 33, 30, 33, PAL["red"])], PAL["black"])
    style = paint((64, 64), [(0, 32, 0, 64, PAL["red"])], PAL["black"])
    pair = masks.parse_mask_pair(content, style, min_region_pixels=1)
    assert pair.labels == ("black", "red")
    layers = ("relu1_1", "relu2_1", "relu3_1", "relu5_1")
    props = masks.propagate_masks(pair.content, layers=layers)
    notes = masks.check_regions(props, pair.labels, which="content")
    # 9 pixels: 9/4 at relu2_1, 9/16 < 1 at relu3_1, 9/256 at relu5_1.
    assert len(notes) == 2
    assert "region 'red' of the content mask vanishes at relu3_1" in notes[0]
    assert "relu5_1" in notes[1] and "black" not in " ".join(notes)
    assert masks.check_regions(props, pair.labels, min_pixels=0.01) == ()
    padded = {k: jnp.concatenate([v, jnp.zeros_like(v[..., :1])], -1) for k, v in props.items()}
    assert len(masks.check_regions(padded, (*pair.labels, ""))) == 2  # padding is not reported


def test_style_fallback_replaces_only_vanished_channels():
    mask = np.zeros((8, 8, 3), np.float32)
    mask[..., 0] = 1.0
    mask[0, 0, 1] = 0.5  # vanished (0.5 < 1); channel 2 is empty padding
    fallback = jax.jit(functools.partial(masks.with_style_fallback, labels=("a", "b", "")))
    out = fallback({"relu1_1": jnp.asarray(mask)})["relu1_1"]
    batched = jax.vmap(fallback)({"relu1_1": jnp.stack([jnp.asarray(mask), jnp.ones_like(mask)])})
    np.testing.assert_array_equal(np.asarray(batched["relu1_1"][0]), np.asarray(out))
    np.testing.assert_array_equal(np.asarray(batched["relu1_1"][1]), 1.0)  # nothing vanished
    np.testing.assert_array_equal(np.asarray(out[..., 0]), 1.0)
    np.testing.assert_array_equal(np.asarray(out[..., 1]), 1.0)
    np.testing.assert_array_equal(np.asarray(out[..., 2]), 0.0)
    notes = masks.check_regions({"relu1_1": mask}, ("a", "b", ""), which="style")
    assert len(notes) == 1 and "whole style image" in notes[0]


# ----------------------------------------------------------------------------- writing


def test_labels_to_color_round_trips_palette_and_hex_labels():
    pair = masks.parse_mask_pair(CONTENT, STYLE)
    colour = masks.labels_to_color(pair.content, pair.labels)
    np.testing.assert_array_equal(colour, CONTENT)
    orange = (255, 128, 0)
    arb = paint((40, 50), [(10, 30, 10, 30, orange)], (0, 128, 128))
    arb_pair = masks.parse_mask_pair(arb, arb)
    again = masks.parse_mask_pair(masks.labels_to_color(arb_pair.content, arb_pair.labels), arb)
    assert again.labels == arb_pair.labels == ("#008080", "#ff8000")
    np.testing.assert_array_equal(again.content, arb_pair.content)


def test_labels_to_color_keeps_integer_regions_apart():
    labels = np.kron(np.arange(12).reshape(3, 4), np.ones((8, 8), int))
    pair = masks.parse_mask_pair(labels, labels)
    colour = masks.labels_to_color(pair.content, pair.labels)
    assert len(np.unique(colour.reshape(-1, 3), axis=0)) == 12
    back = masks.parse_mask_pair(colour, colour)
    assert len(back.labels) == 12
    np.testing.assert_array_equal(back.content.argmax(-1)[..., None] == np.arange(12)[None, None],
                                  back.content.astype(bool))
    # Same partition: each original label maps to exactly one read-back label.
    for k in range(12):
        assert len(np.unique(back.content.argmax(-1)[labels == k])) == 1


def test_mask_files_by_path(tmp_path):
    pytest.importorskip("jaxstyle.reading")
    from PIL import Image

    Image.fromarray(CONTENT).save(tmp_path / "c.png")
    Image.fromarray(STYLE).save(tmp_path / "s.png")
    np.testing.assert_array_equal(masks.read_mask_file(tmp_path / "c.png"), CONTENT)
    pair = masks.parse_mask_pair(str(tmp_path / "c.png"), tmp_path / "s.png")
    assert pair.labels == ("black", "white", "red")


def test_masks_that_share_no_label_are_an_error_that_says_what_to_do():
    """Every content region would take the whole style image: that is no masked transfer."""
    content = paint((20, 20), [(0, 10, 0, 20, PAL["blue"])], PAL["green"])
    style = paint((20, 20), [(0, 10, 0, 20, PAL["red"])], PAL["yellow"])
    with pytest.raises(JaxstyleError, match=r"labels \('blue', 'green'\) and the style mask's \('red', 'yellow'\) "
                                            r"have none in common.*same colour.*or give no masks"):
        masks.parse_mask_pair(content, style)
    labels = np.zeros((20, 20), np.int32)
    with pytest.raises(JaxstyleError, match="have none in common"):
        masks.parse_mask_pair(labels, labels + 3)
    # One shared label is enough (the others fall back or are dropped, with notes).
    style[10:] = PAL["green"]
    assert masks.parse_mask_pair(content, style).labels == ("blue", "green")
