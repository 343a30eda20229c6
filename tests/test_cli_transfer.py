"""`jaxstyle transfer` and `jaxstyle demo` through typer's CliRunner and the installed console script.

Exit codes: 0 success, 2 bad input (one `error:` line, no traceback), 1 internal failure,
130 Ctrl-C. Every run uses 32x48 images and a tiny TOML config, so all successful runs share
one set of compiled stages (the demo at --max-side 48 has the same shapes).
"""

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import synthetic_photo, tiny_toml
from jaxstyle import cli, filesafety, host, optimize, reading, single, sizing, smoothing, writing
from jaxstyle import weights as weights_lib
from jaxstyle.config import load_config
from jaxstyle.optimize import finalize
from jaxstyle.pipeline import finish

runner = CliRunner()
H, W = 32, 48  # the demo pair at --max-side 48 is 48x32 too
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TERM_KEYS = ("content", "style", "tv", "photo")


@pytest.fixture(autouse=True)
def clean_env(tmp_path_factory, monkeypatch):
    """An empty weights cache of our own (the bundled VGG-16 is used) and no debug tracebacks."""
    monkeypatch.setenv("JAXSTYLE_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("JAXSTYLE_DEBUG", raising=False)


def make_inputs(folder: Path, *, iterations: int = 4, seed: int = 0) -> dict[str, Path]:
    """Content and style PNGs (32x48) and a tiny config in `folder`."""
    paths = {"content": folder / "content.png", "style": folder / "style.png", "config": folder / "tiny.toml"}
    writing.save_image(synthetic_photo(H, W, 0), paths["content"])
    writing.save_image(synthetic_photo(H, W, 3)[..., ::-1], paths["style"])
    paths["config"].write_text(tiny_toml(side=64, depth=3, steps=iterations, zero_tol=True, pixels=True,
                                          top=f"seed = {seed}"))
    return paths


@pytest.fixture
def inputs(tmp_path):
    return make_inputs(tmp_path)


def invoke(*args, **kwargs):
    return runner.invoke(cli.app, [str(a) for a in args], **kwargs)


def transfer(inputs, output, *extra):
    return invoke("transfer", inputs["content"], inputs["style"], "-o", output,
                  "--config", inputs["config"], *extra)


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def error_line(result, code: int = 2, prefix: str = "error: ") -> str:
    """The single stderr line of a failed run (checks the exit code, no traceback, no stdout)."""
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), result.stderr
    return lines[0]


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def as_uint8(image) -> np.ndarray:
    """What save_image stores for a float image."""
    return np.round(np.clip(np.asarray(image, np.float32), 0, 1) * 255).astype(np.uint8)


def expected_config(config: Path, overrides=None) -> dict:
    return json.loads(json.dumps(load_config(str(config), overrides).to_dict()))


# ----------------------------------------------------------------------------- bad input: exit 2


def console_script() -> Path:
    script = Path(sys.executable).with_name("jaxstyle")
    if not script.is_file():
        pytest.skip(f"no installed console script beside {sys.executable} (pip install -e .)")
    return script


def write_mask(path: Path, h: int, w: int) -> Path:
    labels = np.zeros((h, w), np.uint8)
    labels[h // 2:] = 255
    Image.fromarray(labels).save(path)
    return path


BAD_INPUTS = {
    # name: (how to break the command line, what the one error line must say)
    "missing content": (lambda p, d: [d / "nope.png", p["style"], "-o", d / "out.png"],
                        ["nope.png: no such file"]),
    "not an image": (lambda p, d: [d / "noise.png", p["style"], "-o", d / "out.png"],
                     ["noise.png is not an image file Pillow can read"]),
    "masks of another aspect ratio": (
        lambda p, d: [p["content"], p["style"], "-o", d / "out.png",
                      "--content-mask", write_mask(d / "cm.png", 48, 48),
                      "--style-mask", write_mask(d / "sm.png", H, W)],
        ["content mask 48x48 does not match image 48x32", "aspect ratios differ"]),
    "content mask without style mask": (
        lambda p, d: [p["content"], p["style"], "-o", d / "out.png",
                      "--content-mask", write_mask(d / "cm.png", H, W)],
        ["a content mask was given but no style mask", "give both masks"]),
    "style mask without content mask": (
        lambda p, d: [p["content"], p["style"], "-o", d / "out.png",
                      "--style-mask", write_mask(d / "sm.png", H, W)],
        ["a style mask was given but no content mask"]),
    "unknown preset": (lambda p, d: [p["content"], p["style"], "-o", d / "out.png", "--config", "fsat"],
                       ["unknown preset 'fsat'", "did you mean 'fast'", "paper"]),
    "missing config file": (lambda p, d: [p["content"], p["style"], "-o", d / "out.png",
                                          "--config", d / "mine.toml"],
                            ["mine.toml does not exist"]),
    "unknown setting": (lambda p, d: [p["content"], p["style"], "-o", d / "out.png",
                                      "--set", "loss.stlye_weight=3"],
                        ["unknown setting 'loss.stlye_weight'", "did you mean 'loss.style_weight'"]),
    "setting of the wrong type": (lambda p, d: [p["content"], p["style"], "-o", d / "out.png",
                                                "--set", "stage1.iterations=many"],
                                  ["stage1.iterations must be a number", "'many'"]),
    "--set without =": (lambda p, d: [p["content"], p["style"], "-o", d / "out.png", "--set", "seed"],
                        ["--set expects KEY=VALUE", "'seed'"]),
    "output over the content": (lambda p, d: [p["content"], p["style"], "-o", p["content"], "--force"],
                                ["refusing to write the result over the input", "content.png"]),
    "output over the style (relative path)": (lambda p, d: [p["content"], p["style"], "-o", "style.png",
                                                            "--force"],
                                              ["refusing to write the result over the input"]),
    "output over a mask": (lambda p, d: [p["content"], p["style"], "-o", d / "cm.png", "--force",
                                         "--content-mask", write_mask(d / "cm.png", H, W),
                                         "--style-mask", write_mask(d / "sm.png", H, W)],
                           ["refusing to write the result over the input", "cm.png"]),
    "existing output without --force": (lambda p, d: [p["content"], p["style"], "-o", d / "old.png"],
                                        ["old.png exists: pass --force"]),
    "unknown output suffix": (lambda p, d: [p["content"], p["style"], "-o", d / "out.gif"],
                              ["out.gif must end in .png, .jpg or .jpeg"]),
    "output without suffix": (lambda p, d: [p["content"], p["style"], "-o", d / "out"],
                              ["must end in .png, .jpg or .jpeg"]),
    "missing output folder": (lambda p, d: [p["content"], p["style"], "-o", d / "nope" / "out.png"],
                              ["does not exist: create it first"]),
    "log in a missing folder": (lambda p, d: [p["content"], p["style"], "-o", d / "out.png",
                                              "--log", d / "nope" / "log.jsonl"],
                                ["does not exist", "log.jsonl"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_exits_2_with_one_line_and_writes_nothing(case, inputs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "noise.png").write_bytes(np.random.default_rng(0).bytes(300))
    (tmp_path / "old.png").write_bytes(b"an earlier result")
    make_args, fragments = BAD_INPUTS[case]
    args = make_args(inputs, tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    result = invoke("transfer", *args, "-q")
    line = error_line(result)
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    # Nothing written, nothing replaced, no temporary files.
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
    assert listing(tmp_path) == sorted(before)


def test_log_over_an_input_is_refused_and_the_input_kept(inputs, tmp_path):
    original = inputs["content"].read_bytes()
    result = transfer(inputs, tmp_path / "out.png", "-q", "--log", inputs["content"])
    assert inputs["content"].read_bytes() == original
    line = error_line(result)
    assert "content.png" in line and "log" in line


def test_console_script_reports_bad_input_in_one_line(inputs, tmp_path):
    """A real process: exit code, stderr exactly one line, no traceback, nothing written."""
    script = console_script()
    before = listing(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "JAXSTYLE_DEBUG"}
    proc = subprocess.run([str(script), "transfer", str(inputs["content"]), str(inputs["style"]),
                           "-o", str(tmp_path / "out.png"), "--config", str(inputs["config"]),
                           "--set", "loss.stlye_weight=3"],
                          capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: "), proc.stderr
    assert "unknown setting 'loss.stlye_weight' (did you mean 'loss.style_weight'?)" in proc.stderr
    assert listing(tmp_path) == before


# ----------------------------------------------------------------------------- internal failure: exit 1


def test_internal_failure_exits_1_in_one_line(inputs, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(single, "stylize", broken)
    before = listing(tmp_path)
    line = error_line(transfer(inputs, tmp_path / "out.png", "-q"), code=1, prefix="internal error: ")
    assert "RuntimeError: boom" in line and "JAXSTYLE_DEBUG=1" in line
    assert listing(tmp_path) == before
    # With JAXSTYLE_DEBUG the exception itself escapes (a traceback for the bug report).
    monkeypatch.setenv("JAXSTYLE_DEBUG", "1")
    result = transfer(inputs, tmp_path / "out.png", "-q")
    assert result.exit_code == 1 and isinstance(result.exception, RuntimeError)


# ----------------------------------------------------------------------------- success


@pytest.mark.slow  # compile-heavy; keeps the default suite under 5 minutes on 2 cores: CI runs it via -m slow
def test_transfer_writes_png_with_metadata_log_and_snapshots(inputs, tmp_path):
    out, log = tmp_path / "out.png", tmp_path / "run.jsonl"
    before = set(listing(tmp_path))
    result = transfer(inputs, out, "--log", log, "--save-every", 2)
    assert result.exit_code == 0, (result.output, result.exception)
    assert result.stdout == ""
    assert "stage1     4/4" in result.stderr and "stage2     4/4" in result.stderr and "ETA" in result.stderr
    assert f"wrote {out} ({W}x{H}, solved at {W}x{H})" in result.stderr

    assert out.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(out) as im:
        assert (im.format, im.mode, im.size) == ("PNG", "RGB", (W, H))
    assert not np.array_equal(pixels(out), pixels(inputs["content"]))
    meta = writing.read_metadata(out)
    assert meta["content"] == str(inputs["content"]) and meta["style"] == str(inputs["style"])
    assert meta["content_mask"] is None and meta["style_mask"] is None
    assert meta["config"] == expected_config(inputs["config"])
    assert meta["status"] == {"stage1": "budget", "stage2": "budget"}
    assert {"setup", "stage1", "stage2", "smooth", "total"} <= set(meta["seconds"])

    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["stage"], r["iteration"]) for r in records] == [
        ("stage1", 2), ("stage1", 4), ("stage2", 2), ("stage2", 4)]
    for r in records:
        assert {"stage", "iteration", "loss", "best_loss", *TERM_KEYS} <= set(r)
        assert all(np.isfinite(r[k]) for k in ("loss", "best_loss", *TERM_KEYS))
        # The terms are those of the best iterate: they add up to its loss.
        np.testing.assert_allclose(sum(r[k] for k in TERM_KEYS), r["best_loss"], rtol=1e-4)
        assert (r["photo"] > 0) == (r["stage"] == "stage2")  # stage 1 has no photorealism term
    assert records[1]["best_loss"] <= records[0]["best_loss"]

    snapshots = {f"out.{stage}-{i:05d}.png" for stage in ("stage1", "stage2") for i in (2, 4)}
    assert set(listing(tmp_path)) == before | {"out.png", "run.jsonl"} | snapshots  # no temp files
    for name in snapshots:
        assert pixels(tmp_path / name).shape == (H, W, 3)

    # An existing output is replaced with --force (and only then).
    old = out.read_bytes()
    assert error_line(transfer(inputs, out, "-q")).endswith("or choose another -o")
    assert out.read_bytes() == old
    assert transfer(inputs, out, "-q", "--force").exit_code == 0


@pytest.mark.slow  # compile-heavy: keeps the default suite under 5 minutes; CI runs it via -m slow
def test_iterations_seed_and_no_smooth_are_honoured(tmp_path):
    """The config file says 6 iterations and seed 9; the options win (and are recorded)."""
    inputs = make_inputs(tmp_path, iterations=6, seed=9)
    out, log = tmp_path / "out.jpg", tmp_path / "run.jsonl"
    result = transfer(inputs, out, "--iterations", 4, "--seed", 0, "--no-smooth", "--log", log, "-q")
    assert result.exit_code == 0, (result.output, result.exception)
    assert result.stderr == ""  # --quiet
    with Image.open(out) as im:
        assert (im.format, im.size) == ("JPEG", (W, H))
    config = writing.read_metadata(out)["config"]
    assert config["stage1"]["iterations"] == config["stage2"]["iterations"] == 4
    assert config["seed"] == 0 and config["smooth"]["enabled"] is False
    assert config == expected_config(inputs["config"], {"stage1.iterations": 4, "stage2.iterations": 4,
                                                        "seed": 0, "smooth.enabled": False})
    assert "smooth" not in writing.read_metadata(out)["seconds"]
    assert writing.read_metadata(out)["weights"]["sha256"] == weights_lib.LPIPS_VGG16_SHA256  # which weights made it
    assert max(json.loads(line)["iteration"] for line in log.read_text().splitlines()) == 4


def test_the_result_records_which_weights_made_it(inputs, tmp_path, monkeypatch):
    """Bundled weights, then a VGG-16 put in the cache: the run says so and its metadata names
    the file and its sha256. (The optimisation is replaced: only what the command line records.)"""
    from jaxstyle.single import Result

    used = []

    def fake_stylize(content, style, *, config, weights, **kwargs):
        used.append(weights)
        return Result(image=np.full((H, W, 3), 0.5, np.float32), stages={}, history={}, terms={}, status={},
                      seconds={"total": 0.0}, notes=(), config=config)

    monkeypatch.setattr(single, "stylize", fake_stylize)
    weights_lib.resolve_weights.cache_clear()
    try:
        assert transfer(inputs, tmp_path / "a.png", "-q").stderr == ""
        assert writing.read_metadata(tmp_path / "a.png")["weights"] == {
            "arch": "vgg16", "convention": "torchvision", "source": "bundled",
            "path": str(weights_lib.lpips_checkpoint_path()), "sha256": weights_lib.LPIPS_VGG16_SHA256}
        # What 'weights import' of a VGG-16 leaves in the cache:
        cached = weights_lib.save_npz(weights_lib.embedded_vgg16(), weights_lib.cached_weights_path("vgg16"))
        weights_lib.resolve_weights.cache_clear()
        result = transfer(inputs, tmp_path / "b.png", "-q")
        assert result.exit_code == 0, (result.output, result.exception)
        assert f"note: backbone vgg16 uses the weights in the cache ({cached})" in result.stderr
        assert writing.read_metadata(tmp_path / "b.png")["weights"] == {
            "arch": "vgg16", "convention": "torchvision", "source": "cache", "path": str(cached),
            "sha256": weights_lib.sha256_file(cached)}
        assert weights_lib.weights_identity(used[-1])["source"] == "cache"  # the weights the run was given
    finally:
        weights_lib.resolve_weights.cache_clear()


@pytest.mark.slow  # compile-heavy: keeps the default suite under 5 minutes; CI runs it via -m slow
def test_refine_adds_the_content_detail_to_the_filtered_result(inputs, tmp_path):
    """--refine: the filtered result plus the content's detail layer (recorded in the metadata)."""
    plain, refined = tmp_path / "plain.png", tmp_path / "refined.png"
    assert transfer(inputs, plain, "-q").exit_code == 0
    result = transfer(inputs, refined, "-q", "--refine")
    assert result.exit_code == 0, (result.output, result.exception)
    assert writing.read_metadata(refined)["config"]["smooth"]["refine"] is True
    assert writing.read_metadata(plain)["config"]["smooth"]["refine"] is False
    content = reading.load_image(inputs["content"])
    want = np.asarray(smoothing.refine_detail(reading.load_image(plain), content))
    got = reading.load_image(refined)
    assert np.abs(got - reading.load_image(plain)).max() > 4 / 255  # the detail layer is not empty
    np.testing.assert_allclose(got, want, atol=1.01 / 255)  # both went through 8-bit PNGs


def test_write_failure_leaves_no_partial_file(inputs, tmp_path, monkeypatch):
    """The disk fills up while the result is written: exit 2, the folder is as before."""
    real = filesafety.write_atomically

    def disk_full(path, write):
        def partial(f):
            write(f)
            raise OSError(errno.ENOSPC, "No space left on device")

        real(path, partial)

    monkeypatch.setattr(filesafety, "write_atomically", disk_full)
    before = listing(tmp_path)
    line = error_line(transfer(inputs, tmp_path / "out.png", "-q"))
    assert "No space left on device" in line
    assert listing(tmp_path) == before


# ----------------------------------------------------------------------------- Ctrl-C: exit 130


def interrupting_minimize(monkeypatch, stage: str, *, after_first_chunk: bool) -> list[np.ndarray]:
    """Make the host driver's `optimize.run` raise KeyboardInterrupt in `stage` (at its start, or
    after its first chunk); returns the list of best images seen, the last being what should be kept."""
    real = optimize.run
    seen: list[np.ndarray] = []

    def fake(fun, x0, args, cfg, *, callback=None, **kwargs):
        here = callback.stage.name  # the stage's reporter
        if here == stage and not after_first_chunk:
            raise KeyboardInterrupt

        def report(p, state):
            callback(p, state)
            if here == stage:
                seen.append(np.asarray(jnp.clip(state.best_x, 0, 1)))
                raise KeyboardInterrupt

        state, history = real(fun, x0, args, cfg, callback=report, **kwargs)
        # stylize checks the last iterate itself (evaluate_last=False): do the same to know its best
        final = state if kwargs.get("evaluate_last", True) else finalize(fun, state, args)
        seen.append(np.asarray(jnp.clip(final.best_x, 0, 1)))
        return state, history

    monkeypatch.setattr(optimize, "run", fake)
    return seen


@pytest.mark.parametrize("stage, after_first_chunk", [("stage1", True), ("stage2", False)])
def test_ctrl_c_keeps_the_best_image_so_far(stage, after_first_chunk, inputs, tmp_path, monkeypatch):
    seen = interrupting_minimize(monkeypatch, stage, after_first_chunk=after_first_chunk)
    out = tmp_path / "out.png"
    before = listing(tmp_path)
    result = transfer(inputs, out, "-q")
    assert result.exit_code == 130, (result.output, result.exception)
    kept = tmp_path / "out.interrupted.png"
    assert f"interrupted: wrote the best image so far to {kept}" in result.stderr
    assert "Traceback" not in result.output
    assert listing(tmp_path) == sorted([*before, kept.name])  # no out.png, no temp files
    np.testing.assert_array_equal(pixels(kept), as_uint8(seen[-1]))
    assert not np.array_equal(pixels(kept), pixels(inputs["content"]))


def test_the_interrupted_image_carries_the_settings(inputs, tmp_path, monkeypatch):
    interrupting_minimize(monkeypatch, "stage1", after_first_chunk=True)
    result = transfer(inputs, tmp_path / "out.png", "-q")
    assert result.exit_code == 130, (result.output, result.exception)
    meta = writing.read_metadata(tmp_path / "out.interrupted.png")
    assert meta["content"] == str(inputs["content"]) and meta["style"] == str(inputs["style"])
    assert meta["config"] == expected_config(inputs["config"])
    assert meta["status"] == "interrupted during stage1" and meta["size"] == [H, W]
    assert meta["weights"]["source"] == "bundled"


def test_ctrl_c_before_any_result_writes_nothing(inputs, tmp_path, monkeypatch):
    interrupting_minimize(monkeypatch, "stage1", after_first_chunk=False)
    before = listing(tmp_path)
    result = transfer(inputs, tmp_path / "out.png", "-q")
    assert result.exit_code == 130
    assert "interrupted before any result" in result.stderr
    assert listing(tmp_path) == before


def test_ctrl_c_during_smoothing_keeps_the_stage2_image(inputs, tmp_path, monkeypatch):
    seen = interrupting_minimize(monkeypatch, "none", after_first_chunk=True)

    real_program = host._program

    def interrupted_filter(fn, *args, **kwargs):
        if fn is finish:
            raise KeyboardInterrupt
        return real_program(fn, *args, **kwargs)

    monkeypatch.setattr(host, "_program", interrupted_filter)
    result = transfer(inputs, tmp_path / "out.png", "-q")
    assert result.exit_code == 130
    assert not (tmp_path / "out.png").exists()
    kept = tmp_path / "out.interrupted.png"
    assert kept.is_file(), result.output
    np.testing.assert_array_equal(pixels(kept), as_uint8(seen[-1]))  # stage 2's best


# ----------------------------------------------------------------------------- demo


@pytest.mark.slow  # a full demo run (~20 s cold): CI runs it via -m slow
def test_demo_writes_result_and_contact_sheet(inputs, tmp_path):
    folder = tmp_path / "new" / "demo"  # created, parents included
    result = invoke("demo", "-o", folder, "--config", inputs["config"], "--max-side", 48, "-q")
    assert result.exit_code == 0, (result.output, result.exception)
    assert listing(folder) == ["result.png", "sheet.png"]
    assert f"wrote {folder / 'result.png'} and {folder / 'sheet.png'}" in result.stdout
    result_pixels = pixels(folder / "result.png")
    content_h, content_w = reading.photo_size(reading.demo_paths()[0])
    assert result_pixels.shape == (content_h, content_w, 3)  # the demo photo's own size ...
    meta = writing.read_metadata(folder / "result.png")
    assert meta["working_size"] == [H, W] and meta["size"] == [content_h, content_w]  # ... solved at 48 px
    assert Path(meta["content"]).name == "demo_content.jpg" and Path(meta["style"]).name == "demo_style.jpg"
    assert meta["config"] == expected_config(inputs["config"], {"max_side": 48})  # the size it ran at
    assert meta["masks"] == "auto"  # the demo pair's regions (sky, city), matched automatically
    sheet = pixels(folder / "sheet.png")
    height = cli.DEMO_SHEET_HEIGHT
    assert content_h > height and sheet.shape[0] > height  # three tiles at the sheet's height, a label band
    tile_w = round(content_w * height / content_h)
    shrunk = as_uint8(sizing.resize_image(result_pixels.astype(np.float32) / 255, (height, tile_w)))
    assert np.abs(sheet[:height, -tile_w:].astype(int) - shrunk).max() <= 1  # the result on the right
    # A second run replaces its own results.
    assert invoke("demo", "-o", folder, "--config", inputs["config"], "--max-side", 48, "-q").exit_code == 0
    assert invoke("demo", "-o", folder, "--masks", "hand", "-q").exit_code == 2  # refused before any work


# ----------------------------------------------------------------------------- real processes (slow)


@pytest.mark.slow
def test_console_script_transfer_and_real_ctrl_c(tmp_path):
    """A full run in a fresh process, then a real SIGINT during stage 1 of a long run."""
    script = console_script()
    inputs = make_inputs(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "JAXSTYLE_DEBUG"}
    env["JAXSTYLE_CACHE"] = str(tmp_path / "cache")
    env["JAXSTYLE_COMPILE_CACHE"] = str(tmp_path / "xla")  # a cold compilation cache of its own
    # Write every program, so whether one is written never depends on how long it took to compile
    # (near the 0.5 s threshold, a busy machine makes the same program cross it in one run only).
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    base = [str(script), "transfer", str(inputs["content"]), str(inputs["style"]), "--config",
            str(inputs["config"])]
    done = subprocess.run([*base, "-o", str(tmp_path / "out.png")], capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert writing.read_metadata(tmp_path / "out.png")["config"] == expected_config(inputs["config"])
    # The run filled the compilation cache; the same run again finds everything there.
    compiled = sorted(p.name for p in (tmp_path / "xla").iterdir())
    assert compiled
    again = subprocess.run([*base, "-o", str(tmp_path / "again.png")], capture_output=True, text=True,
                           timeout=300, env=env)
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in (tmp_path / "xla").iterdir()) == compiled
    np.testing.assert_array_equal(pixels(tmp_path / "again.png"), pixels(tmp_path / "out.png"))

    proc = subprocess.Popen([*base, "-o", str(tmp_path / "long.png"), "--iterations", "100000"],
                            stderr=subprocess.PIPE, env=env)
    try:
        seen, deadline = b"", time.monotonic() + 240
        while b"stage1     2/" not in seen and time.monotonic() < deadline:
            chunk = os.read(proc.stderr.fileno(), 4096)
            if not chunk:
                break
            seen += chunk
        assert b"stage1     2/" in seen, seen
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=120)[1]
    finally:
        proc.kill()
    assert proc.returncode == 130, seen + rest
    assert b"interrupted: wrote the best image so far" in rest
    assert not (tmp_path / "long.png").exists()
    assert pixels(tmp_path / "long.interrupted.png").shape == (H, W, 3)
