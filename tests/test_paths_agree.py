"""Every way to run the pipeline gives the same image, for every preset, on a tiny pair with masks.

`stylize` (host-driven), `stylize_image` (pure, jitted), `stylize_batch` (two items on one
device, and the same two sharded over two devices), and the command line (`jaxstyle transfer`
and `jaxstyle batch`) all run the one plan of `jaxstyle.pipeline`. The library paths run in
this process; the sharded and command-line paths in a subprocess with two simulated CPU
devices (its images come back in an .npz). The library paths of `default` (the grid solve) and the
full-size batch of `default` and `fast` in the default suite; every preset and path with the slow tests.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import synthetic_photo, tiny_toml, two_region_mask
from jaxstyle.batch import stylize_batch
from jaxstyle.config import load_config
from jaxstyle.single import stylize, stylize_image

TESTS = Path(__file__).parent
# float32: batched, sharded and fused programs sum in other orders than a single run, and the
# optimiser's steps amplify that at a few pixels (seen: 3.4e-3 at 14 of 9216 values, sharded
# fast). So: every value within one 8-bit level, and the mean difference far below it; a wrong
# stage plan (a missing stage-2 start, say) moves the mean by 1e-2 or more.
ATOL = 1 / 255
MEAN_ATOL = 1e-4


def tiny(preset: str) -> str:
    return tiny_toml(preset, top='backbone = "vgg16"', tables="[smooth]\nradius = 2\n")


SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path

    import jax
    import numpy as np

    sys.path.insert(0, sys.argv[1])
    from jaxstyle.batch import stylize_batch
    from jaxstyle.config import load_config
    from jaxstyle.single import stylize
    from jaxstyle.weights import embedded_vgg16

    folder = Path(sys.argv[2])
    cfg = load_config(folder / "tiny.toml")
    weights = embedded_vgg16()
    assert jax.local_device_count() == 2
    from test_paths_agree import tiny_pairs

    pairs = tiny_pairs()
    out = {}
    out["stylize"] = np.stack([stylize(c, s, content_mask=cm, style_mask=sm, config=cfg, weights=weights).image
                               for c, s, cm, sm in pairs])
    stacked = [np.stack(a) for a in zip(*pairs)]
    two = stylize_batch(*stacked, config=cfg, weights=weights)
    assert len(two.images.sharding.device_set) == 2
    out["sharded"] = np.asarray(two.images)

    np.savez(folder / "images.npz", **out)
    print("paths ok")
""")


def tiny_pairs() -> list[tuple[np.ndarray, ...]]:
    """Two (content, style, content mask, style mask) pairs, the photos at 8-bit values (what a PNG
    holds, so the files the commands read are these arrays)."""

    def eight_bit(image):
        return (np.round(image * 255) / 255).astype(np.float32)

    return [(eight_bit(synthetic_photo(32, 48, i)), eight_bit(synthetic_photo(36, 40, i + 3)[..., ::-1]),
             two_region_mask(32, 48, i), two_region_mask(36, 40, i + 3)) for i in range(2)]


def assert_same(image, reference, name):
    np.testing.assert_allclose(image, reference, rtol=0, atol=ATOL, err_msg=name)
    assert np.abs(image - reference).mean() < MEAN_ATOL, name


def test_a_warm_start_gives_the_same_image_on_both_library_paths(vgg16, tmp_path):
    """One pair's look as the start of another's solve: `stylize(start_look=...)` and the pure
    `stylize_image(start=...)` agree, and the start changes the result."""
    (tmp_path / "tiny.toml").write_text(tiny("default"))
    cfg = load_config(tmp_path / "tiny.toml")
    first, second = tiny_pairs()
    look = stylize(first[0], first[1], config=cfg, weights=vgg16).look
    warm = stylize(*second[:2], content_mask=second[2], style_mask=second[3], config=cfg, weights=vgg16,
                   start_look=look).image
    pure = jax.jit(lambda *a, start: stylize_image(vgg16, *a, config=cfg, start=start))
    assert_same(np.asarray(pure(*(jnp.asarray(a) for a in second), start=jnp.asarray(look))), warm, "stylize_image")
    cold = stylize(*second[:2], content_mask=second[2], style_mask=second[3], config=cfg, weights=vgg16).image
    assert np.abs(warm - cold).mean() > 1e-3


# paper compiles its own programs (~20 s on 2 cores): with the slow tests.
@pytest.mark.parametrize("preset", [pytest.param("paper", marks=pytest.mark.slow), "default",
                                    pytest.param("fast", marks=pytest.mark.slow)])
def test_library_entry_points_give_the_same_image(preset, vgg16, tmp_path):
    (tmp_path / "tiny.toml").write_text(tiny(preset))
    cfg = load_config(tmp_path / "tiny.toml")
    pairs = tiny_pairs()
    reference = np.stack([stylize(c, s, content_mask=cm, style_mask=sm, config=cfg, weights=vgg16).image
                          for c, s, cm, sm in pairs])
    assert reference.shape == (2, 32, 48, 3)
    assert not np.allclose(reference[0], reference[1], atol=0.05)  # two different pairs
    pure = jax.jit(lambda *a: stylize_image(vgg16, *a, config=cfg))
    assert_same(np.stack([pure(*(jnp.asarray(a) for a in p)) for p in pairs]), reference, "stylize_image")
    batch = stylize_batch(*(np.stack(a) for a in zip(*pairs)), config=cfg, weights=vgg16)
    assert_same(np.asarray(batch.images), reference, "stylize_batch")


@pytest.mark.parametrize("preset", [pytest.param("paper", marks=pytest.mark.slow),
                                    pytest.param("default", marks=pytest.mark.slow),
                                    pytest.param("fast", marks=pytest.mark.slow)])
def test_a_batch_sharded_over_two_devices_gives_the_same_image(preset, tmp_path):
    (tmp_path / "tiny.toml").write_text(tiny(preset))
    script = tmp_path / "paths.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAXSTYLE_CACHE": str(tmp_path / "cache"),
           "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2".strip()}
    run = subprocess.run([sys.executable, str(script), str(TESTS), str(tmp_path)], env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0 and "paths ok" in run.stdout, run.stdout + run.stderr
    images = dict(np.load(tmp_path / "images.npz"))
    reference = images.pop("stylize")
    assert reference.shape == (2, 32, 48, 3)
    assert not np.allclose(reference[0], reference[1], atol=0.05)  # two different pairs
    assert_same(images["sharded"], reference, "sharded")


# Both with the slow tests (~28 s each on 2 cores): in the default suite, test_job checks that the two
# commands write the same file through the one job (a counted solve), and the full-size batch test
# below that the batch's numerics are stylize's.
@pytest.mark.parametrize("preset", [pytest.param("fast", marks=pytest.mark.slow),
                                    pytest.param("default", marks=pytest.mark.slow)])
def test_transfer_and_batch_commands_write_the_same_image(preset, vgg16, tmp_path):
    """`jaxstyle transfer` and `jaxstyle batch` on the same files: the same PNG, the library's."""
    from PIL import Image
    from typer.testing import CliRunner

    from jaxstyle import writing
    from jaxstyle.cli import app

    (tmp_path / "tiny.toml").write_text(tiny(preset))
    config = str(tmp_path / "tiny.toml")
    pairs = tiny_pairs()
    colours = np.array([[0, 0, 255], [0, 255, 0]], np.uint8)
    rows = ["content,style,content_mask,style_mask,output"]
    for i, (c, s, cm, sm) in enumerate(pairs):
        writing.save_image(c, tmp_path / f"c{i}.png")
        writing.save_image(s, tmp_path / f"s{i}.png")
        Image.fromarray(colours[np.argmax(cm, -1)]).save(tmp_path / f"cm{i}.png")
        Image.fromarray(colours[np.argmax(sm, -1)]).save(tmp_path / f"sm{i}.png")
        rows.append(f"c{i}.png,s{i}.png,cm{i}.png,sm{i}.png,b{i}.png")
    (tmp_path / "pairs.csv").write_text("\n".join(rows) + "\n")
    runner = CliRunner()
    for i in range(2):
        r = runner.invoke(app, ["transfer", str(tmp_path / f"c{i}.png"), str(tmp_path / f"s{i}.png"), "-o",
                                str(tmp_path / f"t{i}.png"), "--content-mask", str(tmp_path / f"cm{i}.png"),
                                "--style-mask", str(tmp_path / f"sm{i}.png"), "--config", config, "-q"])
        assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["batch", str(tmp_path / "pairs.csv"), "-o", str(tmp_path / "out"), "--config", config,
                            "--batch-size", "2", "-q"])
    assert r.exit_code == 0, r.output
    transfer = np.stack([np.asarray(Image.open(tmp_path / f"t{i}.png")) for i in range(2)]).astype(int)
    batch = np.stack([np.asarray(Image.open(tmp_path / "out" / f"b{i}.png")) for i in range(2)]).astype(int)
    cfg = load_config(config)
    reference = np.stack([stylize(c, s, content_mask=cm, style_mask=sm, config=cfg, weights=vgg16).image
                          for c, s, cm, sm in pairs])
    # 8-bit PNGs: float32 noise may move a pixel across a rounding boundary, one level at most
    assert np.abs(transfer - batch).max() <= 1 and np.mean(transfer != batch) < 0.05
    assert np.abs(transfer - np.round(reference * 255)).max() <= 1



FULL_CFG = {"max_side": 48, "loss.content_layers": ["relu1_2"], "loss.style_layers": ["relu1_1", "relu1_2"],
            "stage1.iterations": 3, "stage1.chunk_size": 2, "stage2.iterations": 3, "stage2.chunk_size": 2,
            "smooth.radius": 2}  # tiny()'s fast


def full_size_case(weights, preset="fast"):
    """(config, working-size inputs per pair, full-size contents, `stylize`'s images `[2, 64, 96, 3]`)."""
    from jaxstyle.single import load_inputs

    cfg = load_config(preset, {**FULL_CFG, "buckets": False})
    pairs = tiny_pairs()
    fulls = [(np.round(synthetic_photo(64, 96, i) * 255) / 255).astype(np.float32) for i in range(2)]
    reference = np.stack([stylize(f, s, content_mask=cm, style_mask=sm, config=cfg, weights=weights).image
                          for f, (_, s, cm, sm) in zip(fulls, pairs)])
    small = [load_inputs(f, s, cm, sm, max_side=cfg.max_side)[:4] for f, (_, s, cm, sm) in zip(fulls, pairs)]
    assert reference.shape == (2, 64, 96, 3) and small[0][0].shape == (32, 48, 3)
    return cfg, small, fulls, reference


@pytest.mark.parametrize("preset", ["fast", "default"])
def test_the_batch_agrees_with_stylize_at_the_photos_own_size(preset, vgg16):
    """Contents larger than the working size come back at their own size by the same last stage."""
    cfg, small, fulls, reference = full_size_case(vgg16, preset)
    batch = stylize_batch(*(np.stack(a) for a in zip(*small)), config=cfg, weights=vgg16, contents_full=fulls)
    assert_same(np.stack([np.asarray(b) for b in batch.images]), reference, "stylize_batch")


# each compiles the whole pipeline with the full-size stage traced as one program (~20-40 s on 2 cores)
@pytest.mark.parametrize("preset", [pytest.param("fast", marks=pytest.mark.slow),
                                    pytest.param("default", marks=pytest.mark.slow)])
def test_the_pure_pipeline_agrees_with_stylize_at_the_photos_own_size(preset, vgg16):
    """`stylize_image(content_full=)` (traced) against `stylize` (host tile loop)."""
    cfg, small, fulls, reference = full_size_case(vgg16, preset)
    pure = jax.jit(lambda c, s, cm, sm, full: stylize_image(vgg16, c, s, cm, sm, config=cfg, content_full=full))
    assert_same(np.stack([pure(*(jnp.asarray(a) for a in p), jnp.asarray(f)) for p, f in zip(small, fulls)]),
                reference, "stylize_image")
