"""`jaxstyle batch` through typer's CliRunner: bad items fail alone, resume after a kill,
outputs stay inside OUTDIR, unusable manifests exit 2."""

import json
import os
import struct

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import synthetic_photo, tiny_toml, two_region_mask
from jaxstyle import reading, writing
from jaxstyle import runner as R
from jaxstyle.cli import app
from jaxstyle.cachedirs import CACHE_ENV

runner = CliRunner()
H, W, HS, WS = 32, 48, 36, 40
TINY_TOML = tiny_toml(depth=3, chunk=3, pixels=True)
BLUE_GREEN = np.array([[0, 0, 255], [0, 255, 0]], np.uint8)


@pytest.fixture(autouse=True)
def bundled_weights(tmp_path, monkeypatch):
    """An empty weights cache, so 'vgg16' is the bundled network whatever this machine has."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))


def write_inputs(folder, n_pairs=2):
    """Pairs c{i}.png / s{i}.png with colour masks cm{i}.png / sm{i}.png, and tiny.toml."""
    folder.mkdir(exist_ok=True)
    for i in range(n_pairs):
        writing.save_image(synthetic_photo(H, W, i), folder / f"c{i}.png", overwrite=True)
        writing.save_image(synthetic_photo(HS, WS, i + 3)[..., ::-1], folder / f"s{i}.png", overwrite=True)
        for name, (h, w) in ((f"cm{i}.png", (H, W)), (f"sm{i}.png", (HS, WS))):
            mask = two_region_mask(h, w, i if name.startswith("c") else i + 3)
            Image.fromarray(BLUE_GREEN[np.argmax(mask, -1)]).save(folder / name)
    (folder / "tiny.toml").write_text(TINY_TOML)


def invoke(manifest, out, *extra):
    return runner.invoke(app, ["batch", str(manifest), "-o", str(out), "--config",
                               str(manifest.parent / "tiny.toml"), *extra])


def csv_manifest(path, rows, header="content,style,content_mask,style_mask,output,overrides"):
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def summary_items(out):
    return {e["key"]: e for e in json.loads((out / "summary.json").read_text())["items"]}


@pytest.mark.slow  # multi-process / multi-device or many compiles: CI runs it via -m slow
def test_bad_items_fail_alone_with_their_reasons(tmp_path):
    data = tmp_path / "data"
    write_inputs(data)
    (data / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    Image.fromarray(np.zeros((H, 3 * W, 3), np.uint8)).save(data / "wide_mask.png")
    manifest = csv_manifest(data / "m.csv", [
        "c0.png,s0.png,cm0.png,sm0.png,good0.png,",
        "corrupt.png,s0.png,,,corrupt.png,",
        "missing.png,s0.png,,,missing.png,",
        "c0.png,s0.png,wide_mask.png,sm0.png,badmask.png,",
        'c1.png,s1.png,cm1.png,sm1.png,typo.png,"{""stage2.iteratons"": 5}"',
        "c1.png,s1.png,cm1.png,sm1.png,sub/good1.jpg,",
    ])
    out = tmp_path / "out"
    result = invoke(manifest, out, "--batch-size", "2")
    assert result.exit_code == 3, (result.output, result.exception)
    assert "2 done, 0 skipped, 4 failed" in result.stderr
    assert "items/s" in result.stderr and "ETA" in result.stderr  # the progress bar
    items = summary_items(out)
    assert {k: e["status"] for k, e in items.items()} == {
        "good0.png": "done", "corrupt.png": "failed", "missing.png": "failed", "badmask.png": "failed",
        "typo.png": "failed", "sub/good1.jpg": "done"}
    assert "damaged or truncated" in items["corrupt.png"]["reason"]
    assert "no such file" in items["missing.png"]["reason"]
    assert "aspect ratios differ" in items["badmask.png"]["reason"]
    assert "did you mean 'stage2.iterations'" in items["typo.png"]["reason"]
    assert all("reason" not in e for e in items.values() if e["status"] == "done")
    for name in ("good0.png", "sub/good1.jpg"):
        image = reading.load_image(out / name)
        assert image.shape == (H, W, 3)
        assert writing.read_metadata(out / name)["status"] == {"stage1": "budget", "stage2": "budget"}
    # No partial or temporary files; the lock file guards summary.json across processes.
    assert sorted(p.name for p in out.iterdir()) == [".summary.lock", "good0.png", "sub", "summary.json"]


@pytest.mark.slow  # compile-heavy; keeps the default suite under 5 minutes on 2 cores: CI runs it via -m slow
def test_resume_after_a_kill_redoes_nothing_finished(tmp_path, monkeypatch):
    data = tmp_path / "data"
    write_inputs(data)
    manifest = csv_manifest(data / "m.csv", [f"c{i % 2}.png,s{i % 2}.png,cm{i % 2}.png,sm{i % 2}.png,o{i}.png,"
                                             for i in range(4)])
    out = tmp_path / "out"
    real = R.stylize_batch
    calls = []

    def killed_on_second_batch(contents, *args, **kwargs):
        calls.append(len(contents))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(contents, *args, **kwargs)

    monkeypatch.setattr(R, "stylize_batch", killed_on_second_batch)
    result = invoke(manifest, out, "--batch-size", "2")
    assert result.exit_code == 130 and "rerun to resume" in result.stderr
    assert {k: e["status"] for k, e in summary_items(out).items()} == {"o0.png": "done", "o1.png": "done"}
    assert sorted(p.name for p in out.glob("*.png")) == ["o0.png", "o1.png"]
    finished = {name: os.stat(out / name).st_mtime_ns for name in ("o0.png", "o1.png")}

    calls.clear()
    monkeypatch.setattr(R, "stylize_batch", lambda *a, **k: calls.append(len(a[0])) or real(*a, **k))
    result = invoke(manifest, out, "--batch-size", "2")
    assert result.exit_code == 0, (result.output, result.exception)
    assert calls == [2]  # one batch: the two unfinished items
    assert {name: os.stat(out / name).st_mtime_ns for name in finished} == finished
    statuses = {k: e["status"] for k, e in summary_items(out).items()}
    assert statuses == {"o0.png": "skipped", "o1.png": "skipped", "o2.png": "done", "o3.png": "done"}

    calls.clear()
    result = invoke(manifest, out, "--batch-size", "2", "--force")
    assert result.exit_code == 0 and calls == [2, 2]
    assert all(os.stat(out / name).st_mtime_ns > t for name, t in finished.items())


def test_outputs_cannot_escape_the_output_folder(tmp_path):
    data = tmp_path / "data"
    write_inputs(data, n_pairs=1)
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (out / "link").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    manifest = csv_manifest(data / "m.csv", ["c0.png,s0.png,../escape.png", f"c0.png,s0.png,{tmp_path}/abs.png",
                                             "c0.png,s0.png,link/x.png", "c0.png,s0.png,a/../../b.png"],
                            header="content,style,output")
    result = invoke(manifest, out)
    assert result.exit_code == 3
    items = summary_items(out)
    assert [e["status"] for e in items.values()] == ["failed"] * 4
    assert "'..'" in items["../escape.png"]["reason"] and "'..'" in items["a/../../b.png"]["reason"]
    assert "relative" in items[f"{tmp_path}/abs.png"]["reason"]
    assert "symbolic link" in items["link/x.png"]["reason"]
    assert not any((tmp_path / "elsewhere").iterdir())
    assert sorted(p.name for p in tmp_path.glob("*.png")) == []


@pytest.mark.parametrize("text, message", [
    (None, "does not exist"),
    ("", "is empty"),
    ("contents,style\nc0.png,s0.png\n", "did you mean 'content'"),
    ("content,style\n", "has no items"),
])
def test_unusable_manifests_exit_2(tmp_path, text, message):
    data = tmp_path / "data"
    write_inputs(data, n_pairs=1)
    manifest = data / "m.csv"
    if text is not None:
        manifest.write_text(text)
    result = invoke(manifest, tmp_path / "out")
    assert result.exit_code == 2, (result.output, result.exception)
    assert message in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "out" / "summary.json").exists()


def test_bad_settings_exit_2_before_any_work(tmp_path):
    data = tmp_path / "data"
    write_inputs(data, n_pairs=1)
    manifest = csv_manifest(data / "m.csv", ["c0.png,s0.png"], header="content,style")
    result = runner.invoke(app, ["batch", str(manifest), "-o", str(tmp_path / "out"), "--config", "fsat"])
    assert result.exit_code == 2 and "did you mean 'fast'" in result.stderr
    result = runner.invoke(app, ["batch", str(manifest), "-o", str(tmp_path / "out"), "--coordinator", "x:1"])
    assert result.exit_code == 2 and "--num-processes" in result.stderr


def test_summary_json_has_the_images_permissions(tmp_path, monkeypatch):
    """Created as the images are: 0o666 less the umask (0644 under umask 022), not 0600."""
    data = tmp_path / "data"
    write_inputs(data, n_pairs=1)
    manifest = csv_manifest(data / "m.csv", ["missing.png,s0.png,o.png"], header="content,style,output")
    monkeypatch.setattr(R, "stylize_batch", lambda *a, **k: pytest.fail("nothing should run"))
    old = os.umask(0o022)
    try:
        result = invoke(manifest, tmp_path / "out", "-q")
    finally:
        os.umask(old)
    assert result.exit_code == 3, (result.output, result.exception)
    assert (tmp_path / "out" / "summary.json").stat().st_mode & 0o777 == 0o644


@pytest.mark.slow  # compile-heavy: keeps the default suite under 5 minutes; CI runs it via -m slow
def test_items_of_different_full_sizes_share_a_bucket_and_keep_their_sizes(tmp_path):
    """Two photos of one aspect, 64x96 and 96x144, solve together at 32x48 and come back at their sizes."""
    folder = tmp_path / "in"
    write_inputs(folder, n_pairs=1)
    writing.save_image(synthetic_photo(64, 96, 5), folder / "big0.png")
    writing.save_image(synthetic_photo(96, 144, 6), folder / "big1.png")
    manifest = csv_manifest(folder / "m.csv", ["big0.png,s0.png,,,o0.png,", "big1.png,s0.png,,,o1.png,"])
    out = tmp_path / "out"
    result = invoke(manifest, out, "--batch-size", 2, "-q")
    assert result.exit_code == 0, result.output
    for name, size in (("o0.png", [64, 96]), ("o1.png", [96, 144])):
        meta = writing.read_metadata(out / name)
        assert meta["size"] == size and meta["working_size"] == [32, 48]
        with Image.open(out / name) as im:
            assert im.size == (size[1], size[0])


@pytest.mark.slow  # two batch runs at new shapes (~12 s cold on 2 cores); the refusals are tested below
def test_output_options_apply_to_every_item(tmp_path):
    """--max-output-side, --bits 16 and --jpeg-quality as in `transfer`; with --bits 16 a .jpg item
    fails alone, before any work; without --bits a PNG item has its photo's depth."""
    folder = tmp_path / "in"
    write_inputs(folder, n_pairs=1)
    writing.save_image(synthetic_photo(64, 96, 5), folder / "big.png")
    manifest = csv_manifest(folder / "m.csv", ["big.png,s0.png,,,a.png,", "big.png,s0.png,,,b.jpg,"])
    out = tmp_path / "out"
    result = invoke(manifest, out, "--bits", 16, "--max-output-side", 72, "-q")
    assert result.exit_code == 3, (result.output, result.exception)
    items = summary_items(out)
    assert items["a.png"]["status"] == "done" and items["b.jpg"]["status"] == "failed"
    assert "16-bit results are written as PNG only" in items["b.jpg"]["reason"] and not (out / "b.jpg").exists()
    meta = writing.read_metadata(out / "a.png")
    assert meta["size"] == [48, 72] and meta["working_size"] == [32, 48]
    ihdr = (out / "a.png").read_bytes()[16:26]  # width, height, bit depth, colour type (PNG spec)
    assert struct.unpack(">IIBB", ihdr) == (72, 48, 16, 2)

    # without --bits: a PNG item has its photo's depth
    writing.save_image(synthetic_photo(64, 96, 5), folder / "deep.png", bits=16)
    manifest = csv_manifest(folder / "q.csv", ["big.png,s0.png,,,q.jpg,", "deep.png,s0.png,,,d.png,",
                                               "big.png,s0.png,,,e.png,"])
    result = invoke(manifest, out, "--jpeg-quality", 40, "-q")
    assert result.exit_code == 0, (result.output, result.exception)
    for name, depth in (("d.png", 16), ("e.png", 8)):
        assert struct.unpack(">IIBB", (out / name).read_bytes()[16:26])[2] == depth
    reference = tmp_path / "reference.jpg"
    with Image.open(out / "q.jpg") as im:
        im.convert("RGB").save(reference, quality=40)
        with Image.open(reference) as ref:
            assert im.quantization == ref.quantization


@pytest.mark.parametrize("extra, message", [(["--bits", "12"], "--bits 12"), (["--jpeg-quality", "0"], "1 to 100"),
                                            (["--max-output-side", "-1"], "max_output_side must be >= 0")])
def test_bad_output_options_exit_2_before_any_work(tmp_path, monkeypatch, extra, message):
    data = tmp_path / "data"
    write_inputs(data, n_pairs=1)
    manifest = csv_manifest(data / "m.csv", ["c0.png,s0.png"], header="content,style")
    monkeypatch.setattr(R, "stylize_batch", lambda *a, **k: pytest.fail("nothing should run"))
    result = invoke(manifest, tmp_path / "out", *extra)
    assert result.exit_code == 2 and message in result.stderr, (result.output, result.exception)
    assert not (tmp_path / "out" / "summary.json").exists()
