"""Bad inputs to `transfer`, `batch`, `demo` and `evaluate` (the sweeps of issues 19 and 29):
each is refused in one line with exit code 2 (a batch item: failed, with its reason) before any
optimisation step runs, and nothing the user had is changed. `no_steps` makes every
optimisation step fail the test."""

import errno
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import synthetic_photo, tiny_toml
from jaxstyle import cli, optimize, reading, single, sizing, writing
from jaxstyle import runner as R
from jaxstyle.errors import JaxstyleError
from jaxstyle.single import load_inputs

runner = CliRunner()
H, W = 32, 48
TINY_TOML = tiny_toml(side=64, depth=3, steps=4, pixels=True)
BLUE, GREEN, RED, YELLOW = (0, 0, 255), (0, 255, 0), (255, 0, 0), (255, 255, 0)


@pytest.fixture(autouse=True)
def clean_env(tmp_path_factory, monkeypatch):
    """An empty weights cache of our own (the bundled VGG-16 is used) and no debug tracebacks."""
    monkeypatch.setenv("JAXSTYLE_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("JAXSTYLE_DEBUG", raising=False)


@pytest.fixture
def no_steps(monkeypatch):
    """Record (and stop) any optimisation step: the refusals under test come before them."""
    calls = []

    def step(*args, **kwargs):
        calls.append(kwargs.get("length"))
        raise AssertionError("an optimisation step ran before the bad input was refused")

    monkeypatch.setattr(optimize, "run_chunk", step)
    return calls


@pytest.fixture
def inputs(tmp_path):
    paths = {"content": tmp_path / "content.png", "style": tmp_path / "style.png", "config": tmp_path / "tiny.toml"}
    writing.save_image(synthetic_photo(H, W, 0), paths["content"])
    writing.save_image(synthetic_photo(H, W, 3)[..., ::-1], paths["style"])
    paths["config"].write_text(TINY_TOML)
    return paths


def transfer(inputs, output, *extra, content=None, style=None):
    args = ["transfer", content or inputs["content"], style or inputs["style"], "-o", output,
            "--config", inputs["config"], "-q", *extra]
    return runner.invoke(cli.app, [str(a) for a in args])


def batch(inputs, manifest: Path, outdir: Path, *extra):
    return runner.invoke(cli.app, ["batch", str(manifest), "-o", str(outdir), "--config", str(inputs["config"]),
                                   "-q", *extra])


def error_line(result, code: int = 2) -> str:
    """The single `error:` line of a refused run (exit code, no traceback, nothing on stdout)."""
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def failed_batch(inputs, folder: Path, rows: list[str]) -> dict[str, dict]:
    """Run `batch` on a manifest of `rows` (content,style,output) in `folder`, where some item
    fails (exit code 3); its summary's items by output."""
    manifest = folder / "m.csv"
    manifest.write_text("content,style,output\n" + "".join(f"{row}\n" for row in rows))
    result = runner.invoke(cli.app, ["batch", str(manifest), "-o", str(folder / "out"), "--config",
                                     str(inputs["config"]), "-q"])
    assert result.exit_code == 3, (result.output, result.exception)
    return {e["key"]: e for e in R.read_summary(folder / "out")["items"]}


def paint(path: Path, h: int, w: int, top, bottom) -> Path:
    mask = np.empty((h, w, 3), np.uint8)
    mask[: h // 2], mask[h // 2:] = top, bottom
    Image.fromarray(mask).save(path)
    return path


# ----------------------------------------------------------------------------- 1: --log


def test_a_refused_run_leaves_an_existing_log_as_it_was(inputs, tmp_path, no_steps):
    log = tmp_path / "run.jsonl"
    log.write_text('{"stage": "stage1", "iteration": 25}\n')
    before = snapshot(tmp_path)
    line = error_line(transfer(inputs, tmp_path / "out.png", "--log", log, style=tmp_path / "missing.png"))
    assert "missing.png: no such file" in line
    assert snapshot(tmp_path) == before  # the log still holds the earlier run's records
    assert no_steps == []


# ----------------------------------------------------------------------------- 5: unwritable outputs


@pytest.fixture
def locked(tmp_path, monkeypatch):
    """A folder in which no file can be created (as a read-only folder is, even for root)."""
    folder = tmp_path / "locked"
    folder.mkdir()
    real_open = os.open

    def guarded(path, flags, *args, **kwargs):
        if Path(path).parent == folder and flags & os.O_CREAT:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded)
    return folder


def test_an_unwritable_output_folder_is_refused_before_any_work(inputs, locked, no_steps):
    line = error_line(transfer(inputs, locked / "out.png"))
    assert f"cannot write the result {locked / 'out.png'}: Permission denied" in line
    assert ".tmp" not in line and no_steps == []
    assert list(locked.iterdir()) == []


def test_an_unwritable_log_folder_is_refused_before_any_work(inputs, tmp_path, locked, no_steps):
    line = error_line(transfer(inputs, tmp_path / "out.png", "--log", locked / "run.jsonl"))
    assert "cannot write --log" in line and "run.jsonl" in line and no_steps == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes to read-only folders")
def test_a_read_only_output_folder_is_refused_before_any_work(inputs, tmp_path, no_steps):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        line = error_line(transfer(inputs, folder / "out.png"))
    finally:
        folder.chmod(0o755)
    assert "cannot write the result" in line and no_steps == []


def test_a_failed_write_names_the_output_not_the_temporary_file(locked):
    with pytest.raises(OSError) as caught:
        writing.save_image(np.zeros((4, 4, 3), np.float32), locked / "out.png")
    assert caught.value.filename == str(locked / "out.png")


def test_an_output_hard_linked_to_an_input_is_refused_even_with_force(inputs, tmp_path, no_steps):
    out = tmp_path / "out.png"
    os.link(inputs["content"], out)
    original = inputs["content"].read_bytes()
    line = error_line(transfer(inputs, out, "--force"))
    assert "refusing to write the result over the input" in line and "--force never replaces an input" in line
    assert inputs["content"].read_bytes() == original and no_steps == []


# ----------------------------------------------------------------------------- 6: numbers


@pytest.mark.parametrize("extra, message", [
    (["--max-side", "0"], "--max-side must be at least 1 (pixels), got 0"),
    (["--set", "loss.style_weight=nan"], "setting loss.style_weight must be a finite number, got nan"),
    (["--set", "loss.photo_weight=inf"], "setting loss.photo_weight must be a finite number, got inf"),
    (["--set", "stage2.learning_rate=-inf"], "setting stage2.learning_rate must be a finite number"),
    (["--save-every", "-1"], "--save-every must be 0"),
    (["--set", "loss.style_wieght=1"], "unknown setting 'loss.style_wieght' (did you mean 'loss.style_weight'?)"),
])
def test_bad_numbers_and_names_are_refused_before_any_work(inputs, tmp_path, no_steps, extra, message):
    before = snapshot(tmp_path)
    assert message in error_line(transfer(inputs, tmp_path / "out.png", *extra))
    assert snapshot(tmp_path) == before and no_steps == []


def test_batch_max_side_0_is_refused_before_any_work(inputs, tmp_path, no_steps):
    manifest = tmp_path / "m.csv"
    manifest.write_text("content,style\ncontent.png,style.png\n")
    result = runner.invoke(cli.app, ["batch", str(manifest), "-o", str(tmp_path / "out"), "--config",
                                     str(inputs["config"]), "--max-side", "0", "-q"])
    assert "max_side must be at least 1 (pixels), got 0" in error_line(result)
    assert no_steps == [] and not (tmp_path / "out" / "summary.json").exists()


# ----------------------------------------------------------------------------- photos too small for the network


@pytest.mark.parametrize("which, shape", [("content", (8, 300)), ("style", (600, 12)), ("style", (10, 10))])
def test_a_photo_too_thin_for_the_network_is_refused_before_any_work(inputs, tmp_path, no_steps, which, shape):
    """VGG's deepest layers see 1/16 of the image: a side under 16 px at the working size used to end
    in an internal ZeroDivisionError after loading. The suggested working size must suffice."""
    thin = tmp_path / f"thin_{which}.png"
    writing.save_image(synthetic_photo(*shape, 5), thin)
    before = snapshot(tmp_path)
    line = error_line(transfer(inputs, tmp_path / "out.png", "--max-side", "64", **{which: thin}))
    h, w = sizing.fit_max_side(*shape, 64)
    assert f"the {which} image is {w}x{h} px at the working size" in line and "at least 16 px" in line
    assert snapshot(tmp_path) == before and no_steps == []
    need = int(line.split("working size of at least ")[1].split()[0])
    if min(shape) >= 16:  # the photo is large enough: the suggested working size is accepted
        load_inputs(synthetic_photo(H, W, 0) if which == "style" else synthetic_photo(*shape, 5),
                    synthetic_photo(*shape, 5) if which == "style" else synthetic_photo(H, W, 0), max_side=need)
        with pytest.raises(JaxstyleError, match="at least 16 px"):
            load_inputs(synthetic_photo(H, W, 0) if which == "style" else synthetic_photo(*shape, 5),
                        synthetic_photo(*shape, 5) if which == "style" else synthetic_photo(H, W, 0),
                        max_side=need - 1)


def test_a_batch_item_too_thin_for_the_network_fails_before_any_work(inputs, tmp_path, no_steps):
    writing.save_image(synthetic_photo(600, 12, 5), tmp_path / "thin.png")
    items = failed_batch(inputs, tmp_path, ["thin.png,style.png,a.png", "content.png,thin.png,b.png"])
    assert "the content image is 1x64 px" in items["a.png"]["reason"]
    assert "the style image is 1x64 px" in items["b.png"]["reason"]
    assert no_steps == []


# ----------------------------------------------------------------------------- camera RAW and HEIC files


def raw_like(path: Path, thumbnail=(120, 160)) -> Path:
    """A TIFF whose first image is a small preview marked reduced-resolution (NewSubFileType 1), as
    DNG, NEF, CR2 and ARW files begin; Pillow opens the preview."""
    from PIL import TiffImagePlugin

    fields = TiffImagePlugin.ImageFileDirectory_v2()
    fields[254] = 1
    Image.fromarray((synthetic_photo(*thumbnail, 2) * 255).astype(np.uint8)).save(path, format="TIFF", tiffinfo=fields)
    return path


@pytest.mark.parametrize("which", ["content", "style"])
def test_a_raw_files_preview_is_refused_before_any_work(inputs, tmp_path, no_steps, which):
    """Pillow shows only a RAW file's preview: the run would quietly style a 160x120 thumbnail."""
    raw = raw_like(tmp_path / "photo.dng")
    with Image.open(raw) as im:
        assert im.size == (160, 120)  # what Pillow alone would have given the run
    before = snapshot(tmp_path)
    line = error_line(transfer(inputs, tmp_path / "out.png", **{which: raw}))
    assert "photo.dng: its first image is a 160x120 preview" in line and "develop it" in line
    assert snapshot(tmp_path) == before and no_steps == []


def test_a_raw_preview_in_a_batch_fails_alone(inputs, tmp_path, no_steps):
    raw_like(tmp_path / "photo.nef")
    items = failed_batch(inputs, tmp_path, ["photo.nef,style.png,a.png"])
    assert "preview of a larger one" in items["a.png"]["reason"] and no_steps == []


def test_a_full_size_tiff_is_not_taken_for_a_preview(tmp_path):
    path = tmp_path / "page.tif"
    Image.fromarray((synthetic_photo(20, 30, 2) * 255).astype(np.uint8)).save(path, format="TIFF")
    assert reading.load_image(path).shape == (20, 30, 3) and reading.photo_size(path) == (20, 30)


@pytest.mark.parametrize("name, hint", [("photo.RAF", "a camera RAW file: develop it"), ("photo.cr3", "develop it"),
                                        ("photo.heic", "export it as JPEG or PNG"),
                                        ("photo.xyz", "pass a PNG, JPEG, TIFF")])
def test_files_pillow_cannot_read_say_what_to_do_for_their_kind(inputs, tmp_path, no_steps, name, hint):
    unknown = tmp_path / name
    unknown.write_bytes(b"FUJIFILMCCD-RAW " + bytes(200))
    line = error_line(transfer(inputs, tmp_path / "out.png", content=unknown))
    assert f"{name} is not an image file Pillow can read" in line and hint in line


# ----------------------------------------------------------------------------- 8: masks with no label in common


def test_masks_that_share_no_label_are_refused_before_any_work(inputs, tmp_path, no_steps):
    content_mask = paint(tmp_path / "cm.png", H, W, BLUE, GREEN)
    style_mask = paint(tmp_path / "sm.png", H, W, RED, YELLOW)
    line = error_line(transfer(inputs, tmp_path / "out.png", "--content-mask", content_mask,
                               "--style-mask", style_mask))
    assert "have none in common" in line and "same colour" in line
    assert not (tmp_path / "out.png").exists() and no_steps == []


# ----------------------------------------------------------------------------- 2: batch output = input


@pytest.mark.parametrize("force", [False, True])
def test_a_batch_item_whose_output_is_its_input_fails_before_any_work(inputs, tmp_path, monkeypatch, no_steps,
                                                                      force):
    os.link(inputs["style"], tmp_path / "linked.png")
    manifest = tmp_path / "m.csv"
    manifest.write_text("content,style,output\ncontent.png,style.png,content.png\ncontent.png,linked.png,style.png\n")
    batches = []
    monkeypatch.setattr(R, "stylize_batch", lambda *a, **k: batches.append(a) or pytest.fail("a batch ran"))
    before = snapshot(tmp_path)
    result = runner.invoke(cli.app, ["batch", str(manifest), "-o", str(tmp_path), "--config", str(inputs["config"]),
                                     "-q", *(["--force"] if force else [])])
    assert result.exit_code == 3, (result.output, result.exception)  # failed, not "skipped"
    assert "0 done, 0 skipped, 2 failed" in result.stderr
    items = {e["key"]: e for e in R.read_summary(tmp_path)["items"]}
    # the one wording of `job.refuse_input_as_output`, as `transfer` says it
    assert "refusing to write output 'content.png' over the input" in items["content.png"]["reason"]
    assert "(the content)" in items["content.png"]["reason"]
    assert "linked.png (the style)" in items["style.png"]["reason"]  # through a hard link
    assert all("--force never replaces an input" in e["reason"] for e in items.values())
    after = snapshot(tmp_path)
    assert {k: after[k] for k in before} == before and batches == [] and no_steps == []


# ----------------------------------------------------------------------------- 9: Ctrl-C, transparency


def test_ctrl_c_before_the_optimisation_exits_130_without_a_traceback(inputs, tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(reading, "load_image", interrupted)
    result = transfer(inputs, tmp_path / "out.png")
    assert result.exit_code == 130, (result.output, result.exception)
    assert result.stderr.strip() == "interrupted" and "Traceback" not in result.output
    assert not (tmp_path / "out.png").exists()


def test_a_real_ctrl_c_while_jax_loads_exits_130_without_a_traceback(inputs, tmp_path):
    """SIGINT as soon as the process has loaded jaxlib (its first seconds): no traceback."""
    script = Path(sys.executable).with_name("jaxstyle")
    if not script.is_file() or not Path("/proc/self/maps").exists():
        pytest.skip("needs the installed console script and /proc")
    env = {k: v for k, v in os.environ.items() if k != "JAXSTYLE_DEBUG"}
    proc = subprocess.Popen([str(script), "transfer", str(inputs["content"]), str(inputs["style"]), "-o",
                             str(tmp_path / "out.png"), "--config", str(inputs["config"]), "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if "jaxlib" in Path(f"/proc/{proc.pid}/maps").read_text():
                    break
            except OSError:
                pass
            time.sleep(0.005)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert "interrupted" in err and not (tmp_path / "out.png").exists()


def test_transparent_pixels_put_on_white_come_with_a_note(tmp_path):
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[..., :3] = 90
    rgba[..., 3] = 255
    rgba[:4, :4, 3] = 0  # a transparent corner
    Image.fromarray(rgba).save(tmp_path / "content.png")
    writing.save_image(synthetic_photo(H, W, 3), tmp_path / "style.png")
    content, _, _, _, notes = load_inputs(tmp_path / "content.png", tmp_path / "style.png")
    np.testing.assert_allclose(content[:4, :4], 1.0)  # white
    assert len(notes) == 1 and "content image" in notes[0] and "transparent pixels" in notes[0]
    # In-memory RGBA arrays too; an opaque alpha channel needs no note.
    assert "transparent" in load_inputs(rgba, tmp_path / "style.png")[4][0]
    rgba[..., 3] = 255
    assert load_inputs(rgba, tmp_path / "style.png")[4] == ()


# ============================================================================= issue 29's sweep (on 4a9cf82)


# ----------------------------------------------------------------------------- evaluate's reports over its inputs


@pytest.mark.parametrize("option", ["--sheet", "--json"])
def test_an_evaluate_report_over_an_output_its_manifest_lists_is_refused(inputs, tmp_path, monkeypatch, option):
    from jaxstyle import evaluate as E

    writing.save_image(synthetic_photo(H, W, 1), tmp_path / "result.png")
    manifest = tmp_path / "m.csv"
    manifest.write_text("content,style,output\ncontent.png,style.png,result.png\n")
    monkeypatch.setattr(E, "evaluate_files", lambda *a, **k: pytest.fail("an item was scored"))
    before = snapshot(tmp_path)
    result = runner.invoke(cli.app, ["evaluate", "--manifest", str(manifest), option, str(tmp_path / "result.png")])
    line = error_line(result)
    assert f"refusing to write {option} {tmp_path / 'result.png'} over one of the inputs" in line
    assert snapshot(tmp_path) == before


# ----------------------------------------------------------------------------- batch rows that write one file


@pytest.mark.parametrize("force", [False, True])
def test_batch_rows_whose_outputs_are_one_file_through_a_link_are_refused(inputs, tmp_path, no_steps, force):
    """`lnk -> .` inside the output folder: `a.png` and `lnk/a.png` are one file. The second row
    was "skipped" (or, with --force, would have overwritten the first)."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "lnk").symlink_to(".", target_is_directory=True)
    manifest = tmp_path / "m.csv"
    manifest.write_text("content,style,output\ncontent.png,style.png,a.png\ncontent.png,style.png,lnk/a.png\n")
    before = snapshot(tmp_path)
    line = error_line(batch(inputs, manifest, out, *(["--force"] if force else [])))
    assert "lines 2 and 3 of the manifest both write 'a.png' and 'lnk/a.png', which name one file" in line
    assert "give each row its own output name" in line
    assert snapshot(tmp_path) == before and no_steps == []


def test_a_bad_row_sharing_a_good_rows_output_is_refused_before_any_work(inputs, tmp_path, no_steps):
    """The bad row's "failed" used to replace the good row's "done" in summary.json."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text('{"items": [{"key": "a.png", "index": 0, "status": "done"}]}\n')
    manifest = tmp_path / "m.csv"
    manifest.write_text("content,style,output\ncontent.png,style.png,a.png\ncontent.png,,a.png\n")
    before = snapshot(tmp_path)
    line = error_line(batch(inputs, manifest, out))
    assert "lines 2 and 3 of the manifest both write 'a.png'" in line
    assert snapshot(tmp_path) == before and no_steps == []


# ----------------------------------------------------------------------------- demo


@pytest.mark.parametrize("extra, message", [(["--max-side", "0"], "must be at least 1 (pixels), got 0"),
                                            (["--config", "fastest"], "unknown preset 'fastest'")])
def test_a_refused_demo_leaves_no_output_folder(tmp_path, no_steps, extra, message):
    result = runner.invoke(cli.app, ["demo", "-o", str(tmp_path / "new"), "-q", *extra])
    assert message in error_line(result)
    assert list(tmp_path.iterdir()) == [] and no_steps == []


# ----------------------------------------------------------------------------- transparent content photos


def transparent_photo(path: Path) -> Path:
    rgba = (np.concatenate([synthetic_photo(H, W, 0), np.ones((H, W, 1), np.float32)], -1) * 255).astype(np.uint8)
    rgba[:4, :4, 3] = 0  # a transparent corner
    Image.fromarray(rgba).save(path)
    return path


def test_transfer_says_a_transparent_content_photo_was_put_on_white(inputs, tmp_path, monkeypatch):
    """`transfer` reads the photo once and gives `stylize` its pixels, already on white: the note
    comes from the reading. (`stylize` is replaced: its solve is not what is tested.)"""

    def solved(content, style, *, config, **kwargs):
        return single.Result(image=content, stages={}, history={}, terms={}, status={}, seconds={"total": 0.0},
                        notes=(), config=config, working_size=content.shape[:2])

    monkeypatch.setattr(single, "stylize", solved)
    clear = transparent_photo(tmp_path / "clear.png")
    result = transfer(inputs, tmp_path / "out.png", content=clear)
    assert result.exit_code == 0, (result.output, result.exception)
    assert f"note: the content image {clear} has transparent pixels: they were put on white" in result.stderr
    assert any("transparent pixels" in note for note in writing.read_metadata(tmp_path / "out.png")["notes"])


def test_batch_says_a_transparent_content_photo_was_put_on_white(inputs, tmp_path, monkeypatch):
    from types import SimpleNamespace

    def solved(*stacked, contents_full, **kwargs):
        n = len(contents_full)
        return SimpleNamespace(images=contents_full, failed=[None] * n, status=[{}] * n, notes=[()] * n,
                               seconds={"total": 0.0})

    monkeypatch.setattr(R, "stylize_batch", solved)
    transparent_photo(tmp_path / "clear.png")
    manifest = tmp_path / "m.csv"
    manifest.write_text("content,style,output\nclear.png,style.png,a.png\n")
    result = batch(inputs, manifest, tmp_path / "out")
    assert result.exit_code == 0, (result.output, result.exception)
    (item,) = R.read_summary(tmp_path / "out")["items"]
    assert item["status"] == "done" and any("has transparent pixels" in note for note in item["notes"])


# ----------------------------------------------------------------------------- photos that are not photos


def png_header(w: int, h: int) -> bytes:
    """A PNG of 41 bytes: the signature, a header claiming w x h RGB pixels, and the start of an
    empty data chunk, where Pillow stops reading to open it."""
    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    ihdr = struct.pack(">I", len(header)) + b"IHDR" + header + struct.pack(">I", zlib.crc32(b"IHDR" + header))
    return b"\x89PNG\r\n\x1a\n" + ihdr + struct.pack(">I", 0) + b"IDAT"


@pytest.mark.parametrize("which", ["content", "style"])
def test_a_png_claiming_too_many_pixels_is_refused_from_its_header(inputs, tmp_path, no_steps, which):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header(100_000, 100_000))
    before = snapshot(tmp_path)
    line = error_line(transfer(inputs, tmp_path / "out.png", **{which: bomb}))
    assert f"{bomb}: too many pixels for a safe decode" in line and "downscale the image first" in line
    assert snapshot(tmp_path) == before and no_steps == []


def test_a_folder_given_as_the_content_is_said_to_be_one(inputs, tmp_path, no_steps):
    folder = tmp_path / "photos"
    folder.mkdir()
    before = snapshot(tmp_path)
    line = error_line(transfer(inputs, tmp_path / "out.png", content=folder))
    assert f"{folder} is a directory, not an image file; pass an image file" in line
    assert snapshot(tmp_path) == before and no_steps == []


def test_batch_items_whose_content_is_a_bomb_or_a_folder_fail_alone(inputs, tmp_path, no_steps):
    (tmp_path / "bomb.png").write_bytes(png_header(100_000, 100_000))
    (tmp_path / "photos").mkdir()
    items = failed_batch(inputs, tmp_path, ["bomb.png,style.png,a.png", "photos,style.png,b.png"])
    assert "too many pixels for a safe decode" in items["a.png"]["reason"]
    assert "is a directory, not an image file" in items["b.png"]["reason"]
    assert no_steps == []


# ----------------------------------------------------------------------------- settings


HUGE = "9" * 400  # past float's range: TOML integers have any size


@pytest.mark.parametrize("setting, message", [
    (f"stage1.iterations={HUGE}", "setting stage1.iterations must be a whole number from -2147483648 to 2147483647"),
    ("seed=99999999999999999999", "setting seed must be a whole number from -2147483648 to 2147483647"),
    (f"loss.style_weight={HUGE}", "setting loss.style_weight must be a finite number, got 99999"),
    ("stage1.memory_size=0", "memory_size must be >= 1"),
    ("smooth.patch_radius=-1", "smooth.patch_radius must be >= 0, got -1"),
    ("smooth.edge=-1", "smooth.edge must be > 0, got -1"),
    ("smooth.refine_eps=0", "smooth.refine_eps must be > 0, got 0"),
])
def test_bad_settings_from_set_are_refused_before_any_work(inputs, tmp_path, no_steps, setting, message):
    before = snapshot(tmp_path)
    line = error_line(transfer(inputs, tmp_path / "out.png", "--set", setting))
    assert message in line and len(line) < 300  # a 400-digit number is not printed whole
    assert snapshot(tmp_path) == before and no_steps == []


@pytest.mark.parametrize("text, message", [
    (f"seed = {HUGE}\n{TINY_TOML}".encode(), "setting seed must be a whole number from"),
    (b"base = 5\n", "or the path of a .toml file, in quotes; got base = 5"),
    (TINY_TOML.encode() + "# the caf\xe9's photos\n".encode("latin-1"), "is not UTF-8 text (byte "),
])
def test_bad_settings_files_are_refused_before_any_work(inputs, tmp_path, no_steps, text, message):
    inputs["config"].write_bytes(text)
    before = snapshot(tmp_path)
    assert message in error_line(transfer(inputs, tmp_path / "out.png"))
    assert snapshot(tmp_path) == before and no_steps == []
