"""stylize_batch against single runs (per-pair label sets, divergence isolation, sharding over 4
simulated devices in a subprocess), and the host-side pieces: manifests, output paths, shares."""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

from conftest import pixel_config, synthetic_photo, two_region_mask
from jaxstyle.batch import resolve_strategy, stylize_batch
from jaxstyle.config import Config, SmoothConfig
from jaxstyle.errors import JaxstyleError
from jaxstyle.manifest import ManifestItem, check_distinct_outputs, process_share, read_manifest, safe_output_path
from jaxstyle.objective import LossConfig
from jaxstyle.optimize import OptimConfig
from jaxstyle.runner import initialize_distributed
from jaxstyle.single import load_inputs, stylize

H, W, HS, WS = 32, 48, 36, 40
K = 3  # the common label count: 2-label pairs are padded to 3
LOSS = LossConfig(content_layers=("relu2_2",), style_layers=("relu1_1", "relu2_1", "relu3_1"))
# float32: batched (or per-device) convolutions may sum in another order than a single run, and
# three L-BFGS line searches amplify that (seen: 2.2e-4 on one pixel with 4 simulated devices).
ATOL = 1e-3
TESTS = Path(__file__).parent


def tiny_config(**changes) -> Config:
    base = pixel_config(loss=LOSS, stage1=OptimConfig(iterations=3, chunk_size=3),
                        stage2=OptimConfig(iterations=3, chunk_size=3), smooth=SmoothConfig(radius=3), max_side=64)
    return dataclasses.replace(base, **changes)


def three_band_mask(h: int, w: int) -> np.ndarray:
    """One-hot [h, w, 3]: top, middle and bottom thirds."""
    band = np.arange(h)[:, None] * 3 // h + np.zeros((1, w), int)
    return (band[..., None] == np.arange(3)).astype(np.float32)


def make_pair(seed: int, labels: int):
    """(content, style, content mask, style mask) with `labels` labels, masks unpadded."""
    content, style = synthetic_photo(H, W, seed), synthetic_photo(HS, WS, seed + 3)[..., ::-1].copy()
    if labels == 2:
        return content, style, two_region_mask(H, W, seed), two_region_mask(HS, WS, seed + 3)
    return content, style, three_band_mask(H, W), three_band_mask(HS, WS)


PAIRS = [(0, 2), (1, 3), (5, 2), (6, 3)]  # (seed, labels): two compiled single-run layouts


@pytest.fixture(scope="module")
def cases(vgg16):
    """Per pair: batch inputs padded to K labels, and the single run's image (unpadded masks)."""
    out = []
    for seed, labels in PAIRS:
        c, s, cm, sm = make_pair(seed, labels)
        single = stylize(c, s, content_mask=cm, style_mask=sm, config=tiny_config(), weights=vgg16)
        padded = load_inputs(c, s, cm, sm, num_labels=K)[:4]
        assert padded[2].shape == (H, W, K) and padded[3].shape == (HS, WS, K)
        out.append({"inputs": padded, "single": single})
    return out


def stacked(cases, which):
    return [np.stack([cases[i]["inputs"][j] for i in which]) for j in range(4)]


@pytest.mark.slow  # multi-process / multi-device or many compiles: CI runs it via -m slow
def test_batch_of_pairs_with_different_label_sets_equals_single_runs(vgg16, cases):
    result = stylize_batch(*stacked(cases, [0, 1]), config=tiny_config(), weights=vgg16)
    assert result.images.shape == (2, H, W, 3)
    assert result.strategy == {"stage1": "vmap", "stage2": "vmap"}
    for i in range(2):
        single = cases[i]["single"]
        np.testing.assert_allclose(np.asarray(result.images[i]), single.image, atol=ATOL)
        assert result.status[i] == single.status == {"stage1": "budget", "stage2": "budget"}
        assert result.failed[i] is None
        for stage in ("stage1", "stage2"):
            assert int(result.steps[stage][i]) == len(single.history[stage]) == 3
            np.testing.assert_allclose(result.history[stage][:, i], single.history[stage], rtol=1e-4)


@pytest.mark.slow  # multi-process / multi-device or many compiles: CI runs it via -m slow
def test_a_diverging_item_fails_alone(vgg16, cases):
    good = cases[0]["inputs"]
    bad = (np.full_like(good[0], np.nan),) + tuple(good[1:])
    arrays = [np.stack([a, b]) for a, b in zip(good, bad)]
    result = stylize_batch(*arrays, config=tiny_config(), weights=vgg16)
    assert result.failed[0] is None and "diverged at its first step" in result.failed[1]
    assert result.status[1]["stage1"] == "diverged"
    np.testing.assert_allclose(np.asarray(result.images[0]), cases[0]["single"].image, atol=ATOL)


@pytest.mark.slow
def test_coarse_to_fine_noise_and_zoom_line_search_equal_single_runs(vgg16, cases):
    """The other paths: coarse stage 1 (vmapped resizes and coarse targets), a noisy start,
    and a zoom line search ("auto" maps over items)."""
    zoom = OptimConfig(iterations=3, chunk_size=3, linesearch="zoom")
    cfg = tiny_config(mode="coarse_to_fine", init_noise=0.1, seed=2, stage1=zoom, stage2=zoom)
    result = stylize_batch(*stacked(cases, [0, 2]), config=cfg, weights=vgg16)
    assert result.strategy == {"stage1": "map", "stage2": "map"}
    for i, case in zip(range(2), (0, 2)):
        c, s, cm, sm = make_pair(*PAIRS[case])
        single = stylize(c, s, content_mask=cm, style_mask=sm, config=cfg, weights=vgg16)
        np.testing.assert_allclose(np.asarray(result.images[i]), single.image, atol=ATOL)
        assert result.status[i] == single.status


def test_batched_starts_equal_single_starts_for_every_init():
    """Each item's start in a batch (padded masks included) is its single run's start."""
    from jaxstyle.itemwise import Items
    from jaxstyle.pipeline import initial_image
    inputs = [load_inputs(*make_pair(seed, labels), num_labels=K)[:4] for seed, labels in PAIRS[:2]]
    batch = tuple(np.stack([np.asarray(item[j]) for item in inputs]) for j in range(4))
    for init in ("content", "mean_pixel", "color_transfer"):
        cfg = pixel_config(init=init, init_noise=0.01, seed=3)
        many = np.asarray(jax.jit(lambda key, b: Items("vmap").apply(
            lambda k, item: initial_image(*item, config=cfg, key=k), key, b))(jax.random.PRNGKey(cfg.seed), batch))
        for i, item in enumerate(inputs):
            one = np.asarray(initial_image(*item, config=cfg))
            # float32 with a batched vs an unbatched 3x3 eigh: 2.1e-5 apart on an AMD EPYC, under
            # 1e-5 on the Intel Xeon this was written on; a wrong mask or padding moves pixels by ~0.1.
            np.testing.assert_allclose(many[i], one, atol=1e-4, err_msg=init)
        assert not np.allclose(many[0], batch[0][0], atol=1e-3)


def test_auto_strategy_maps_over_items_only_with_a_zoom_line_search():
    def resolved(strategy, opt):
        return resolve_strategy(strategy, zoom_linesearch=opt.uses_zoom)

    assert resolved("auto", OptimConfig()) == "vmap"
    assert resolved("auto", OptimConfig(method="adam", linesearch="zoom")) == "vmap"
    assert resolved("auto", OptimConfig(linesearch="zoom")) == "map"
    assert resolved("vmap", OptimConfig(linesearch="zoom")) == "vmap"
    with pytest.raises(JaxstyleError, match="did you mean 'map'"):
        resolve_strategy("mapp", zoom_linesearch=False)


def test_bad_batches_are_named(vgg16):
    inputs = [load_inputs(*make_pair(seed, labels), num_labels=K)[:4] for seed, labels in PAIRS[:2]]
    c, s, cm, sm = (np.stack([item[j] for item in inputs]) for j in range(4))
    with pytest.raises(JaxstyleError, match="2 contents and 1 styles"):
        stylize_batch(c, s[:1], config=tiny_config(), weights=vgg16)
    with pytest.raises(JaxstyleError, match="both content and style masks"):
        stylize_batch(c, s, cm, None, config=tiny_config(), weights=vgg16)
    with pytest.raises(JaxstyleError, match="parse_mask_pair"):
        stylize_batch(c, s, cm, sm[..., :2], config=tiny_config(), weights=vgg16)
    with pytest.raises(JaxstyleError, match=r"\[B, H, W, 3\]"):
        stylize_batch(c[0], s[0], config=tiny_config(), weights=vgg16)


SHARDED_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1])
    import jax
    import numpy as np
    from test_batch import ATOL, tiny_config
    from jaxstyle.batch import stylize_batch
    from jaxstyle.weights import embedded_vgg16

    assert jax.local_device_count() == 4, jax.devices()
    data = np.load(sys.argv[2])
    arrays = [data[k] for k in ("contents", "styles", "content_masks", "style_masks")]
    weights = embedded_vgg16()
    # "auto" (vmap: no line search) over 4 pairs, one per device.
    result = stylize_batch(*arrays, config=tiny_config(), weights=weights)
    assert result.strategy == {"stage1": "vmap", "stage2": "vmap"}
    images = result.images
    assert images.shape == data["expected"].shape
    assert len(images.sharding.device_set) == 4, images.sharding
    shards = images.addressable_shards
    assert len({s.device for s in shards}) == 4 and all(s.data.shape[0] == 1 for s in shards)
    np.testing.assert_allclose(np.asarray(images), data["expected"], atol=ATOL)
    # "map" over three pairs, padded to four (one per device); the padding is dropped.
    three = stylize_batch(*(a[:3] for a in arrays), config=tiny_config(), weights=weights, strategy="map")
    assert three.images.shape[0] == 3 and len(three.failed) == 3 and three.history["stage2"].shape[1] == 3
    np.testing.assert_allclose(np.asarray(three.images), data["expected"][:3], atol=ATOL)
    print("sharded ok")
""")


@pytest.mark.slow  # multi-process / multi-device or many compiles: CI runs it via -m slow
def test_sharded_over_four_devices_with_both_strategies_equals_single_runs(cases, tmp_path):
    data = tmp_path / "pairs.npz"
    contents, styles, cms, sms = stacked(cases, range(4))
    np.savez(data, contents=contents, styles=styles, content_masks=cms, style_masks=sms,
             expected=np.stack([c["single"].image for c in cases]))
    script = tmp_path / "sharded.py"
    script.write_text(SHARDED_SCRIPT)
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4".strip()}
    run = subprocess.run([sys.executable, str(script), str(TESTS), str(data)], env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "sharded ok" in run.stdout


# ----------------------------------------------------------------------------- host side


def test_manifest_csv_and_json_lines_read_the_same_items(tmp_path):
    (tmp_path / "m.csv").write_text('content,style,output,overrides\n'
                                    'a.png,b.png,,\n'
                                    'sub/c.png,/abs/d.png,x/y.jpg,"{""stage2.iterations"": 5}"\n'
                                    '\n')
    rows = [{"content": "a.png", "style": "b.png"},
            {"content": "sub/c.png", "style": "/abs/d.png", "output": "x/y.jpg",
             "overrides": {"stage2.iterations": 5}}]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    for name in ("m.csv", "m.jsonl"):
        items = read_manifest(tmp_path / name)
        assert [i.index for i in items] == [0, 1]
        assert items[0].content == tmp_path / "a.png" and items[0].output == "a-b.png"
        assert items[1].style == Path("/abs/d.png") and items[1].output == "x/y.jpg"
        assert items[1].overrides == {"stage2.iterations": 5} and items[0].problem is None


@pytest.mark.parametrize("text, message", [
    ("", "is empty"),
    ("content,stile\na,b\n", "did you mean 'style'"),
    ("content,output\na,b.png\n", "no style column"),
    ("content,style\n\n", "no items"),
    ('{"content": "a"\n', "not valid JSON"),
])
def test_unusable_manifests_raise(tmp_path, text, message):
    path = tmp_path / "m.csv"
    path.write_text(text)
    with pytest.raises(JaxstyleError, match=message):
        read_manifest(path)


def test_missing_manifest_raises(tmp_path):
    with pytest.raises(JaxstyleError, match="does not exist"):
        read_manifest(tmp_path / "nope.csv")


def test_bad_rows_become_item_problems_not_manifest_errors(tmp_path):
    (tmp_path / "m.csv").write_text("content,style,output,overrides\n"
                                    "a.png,b.png,y.png,\n"
                                    "c.png,,x.png,\n"
                                    "f.png,g.png,z.png,{nope\n"
                                    "h.png,i.png,w.png,,extra\n")
    items = read_manifest(tmp_path / "m.csv")
    assert items[0].problem is None
    assert "no style path" in items[1].problem
    assert "not valid JSON" in items[2].problem
    assert "more cells" in items[3].problem
    assert len({i.key for i in items}) == len(items)
    check_distinct_outputs(items, tmp_path / "out")  # no two rows write one file


def test_rows_that_write_one_file_refuse_the_manifest(tmp_path):
    """Good or bad, two rows with one output would overwrite (or replace in summary.json) each
    other's result: the manifest is refused before any work. Names are compared as resolved."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "lnk").symlink_to(".", target_is_directory=True)
    for rows, message in [
        ("a.png,b.png,same.png\nc.png,,same.png\n", "lines 2 and 3 of the manifest both write 'same.png'"),
        ("a.png,b.png,\na.png,b.png,\n", "both write 'a-b.png'"),  # the default output name
        ("a.png,b.png,x.png\nc.png,d.png,lnk/x.png\n", "'x.png' and 'lnk/x.png', which name one file"),
        ("a.png,b.png,x.png\nc.png,d.png,sub/../x.png\n", None),  # '..' is refused, for its row alone
    ]:
        (tmp_path / "m.csv").write_text("content,style,output\n" + rows)
        items = read_manifest(tmp_path / "m.csv")
        if message is None:
            check_distinct_outputs(items, out)
            continue
        with pytest.raises(JaxstyleError, match=message):
            check_distinct_outputs(items, out)


@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_process_shares_partition_the_manifest(count):
    items = [ManifestItem(i, i + 2, Path("c"), Path("s"), output=f"{i}.png") for i in range(11)]
    shares = [process_share(items, p, count) for p in range(count)]
    indices = sorted(i.index for share in shares for i in share)
    assert indices == list(range(11))
    assert max(map(len, shares)) - min(map(len, shares)) <= 1
    assert all(i.index % count == p for p, share in enumerate(shares) for i in share)


def test_output_names_cannot_leave_the_output_folder(tmp_path):
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (out / "link").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (out / "inner").symlink_to(out / "sub", target_is_directory=True)
    assert safe_output_path(out, "a.png") == (out / "a.png").resolve()
    assert safe_output_path(out, "sub/b.jpg") == (out / "sub" / "b.jpg").resolve()
    assert safe_output_path(out, "inner/c.png") == (out / "sub" / "c.png").resolve()  # a link inside is fine
    for name, message in [("/tmp/x.png", "relative"), ("../x.png", r"'\.\.'"), ("sub/../../x.png", r"'\.\.'"),
                          ("link/x.png", "symbolic link"), ("a.gif", "must end in"), ("", "relative")]:
        with pytest.raises(JaxstyleError, match=message):
            safe_output_path(out, name)


def test_initialize_distributed_without_settings_is_one_process(monkeypatch):
    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        monkeypatch.delenv(name, raising=False)
    assert initialize_distributed() == (0, 1)
    assert not jax.distributed.is_initialized()
    with pytest.raises(JaxstyleError, match="missing --num-processes, --process-id"):
        initialize_distributed(coordinator="127.0.0.1:1234")
    monkeypatch.setenv("JAX_NUM_PROCESSES", "two")
    with pytest.raises(JaxstyleError, match="JAX_NUM_PROCESSES must be a whole number"):
        initialize_distributed(coordinator="127.0.0.1:1234", process_id=0)
    monkeypatch.setenv("JAX_NUM_PROCESSES", "2")
    with pytest.raises(JaxstyleError, match="process id must be in 0..1"):
        initialize_distributed(coordinator="127.0.0.1:1234", process_id=2)
    assert not jax.distributed.is_initialized()
