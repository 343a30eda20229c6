"""The one photo job (`jaxstyle.job`): `transfer` and `batch` read, check and write alike.

The fast tests replace the solve (`stylize.run_host` under `transfer`, `runner.stylize_batch`
under `batch`) by the same function of the content, so what they compare is the file level:
one memory check and one read of the content, one metadata schema, one write. The slow test
runs the real solve through both commands.
"""

import json
import os
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import synthetic_photo, tiny_toml, two_region_mask
from jaxstyle import job, reading, single, writing
from jaxstyle import runner as R
from jaxstyle._version import __version__
from jaxstyle.cachedirs import CACHE_ENV
from jaxstyle.cli import app
from jaxstyle.errors import JaxstyleError

runner = CliRunner()
H, W = 32, 48
TINY_TOML = tiny_toml("fast", side=24, steps=2, top='backbone = "vgg16"')
SECONDS = {"setup": 0.25, "stage1": 0.5, "stage2": 0.5, "total": 1.25}
STATUS = {"stage1": "budget", "stage2": "budget"}


@pytest.fixture(autouse=True)
def bundled_weights(tmp_path_factory, monkeypatch):
    """An empty weights cache, so 'vgg16' is the bundled network whatever this machine has."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def pair(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    writing.save_image(synthetic_photo(H, W, 0), folder / "c.png")
    writing.save_image(synthetic_photo(H + 4, W - 8, 3)[..., ::-1], folder / "s.png")
    colours = np.array([[0, 0, 255], [0, 255, 0]], np.uint8)
    Image.fromarray(colours[np.argmax(two_region_mask(H, W, 0), -1)]).save(folder / "cm.png")
    Image.fromarray(colours[np.argmax(two_region_mask(H + 4, W - 8, 3), -1)]).save(folder / "sm.png")
    (folder / "tiny.toml").write_text(TINY_TOML)
    (folder / "m.csv").write_text("content,style,output\nc.png,s.png,b.png\n")
    (folder / "masked.csv").write_text("content,style,content_mask,style_mask,output\n"
                                       "c.png,s.png,cm.png,sm.png,b.png\n")
    return folder


def look_of(content):
    """The stand-in solve: a fixed function of the content photo at its own size."""
    return np.clip(1.0 - np.asarray(content, np.float32) * 0.8, 0.0, 1.0)


@pytest.fixture
def counted(monkeypatch):
    """The solve replaced in both commands, and the memory checks and photo reads counted."""
    calls = {"check_result_memory": [], "read_photo": []}
    for module, name in ((single, "check_result_memory"), (reading, "read_photo")):
        real = getattr(module, name)

        def counting(path, *args, _real=real, _name=name, **kwargs):
            calls[_name].append(str(path) if isinstance(path, (str, os.PathLike)) else type(path).__name__)
            return _real(path, *args, **kwargs)

        monkeypatch.setattr(module, name, counting)

    def run_host(weights, inputs, *, content_full, **kwargs):
        stages = {name: SimpleNamespace(image=None, history=[], terms={}) for name in STATUS}
        return SimpleNamespace(image=look_of(content_full), stages=stages, failed=[None], notes=[()],
                               seconds=dict(SECONDS), look=None)

    def stylize_batch(*stacked, contents_full, **kwargs):
        n = len(contents_full)
        return SimpleNamespace(images=[look_of(c) for c in contents_full], failed=[None] * n, status=[STATUS] * n,
                               notes=[()] * n, seconds={k: v * n for k, v in SECONDS.items()})

    monkeypatch.setattr(single, "run_host", run_host)
    monkeypatch.setattr(single, "status_names", lambda record: ("budget",))
    monkeypatch.setattr(R, "stylize_batch", stylize_batch)
    return calls


def transfer(pair, out, *extra):
    return runner.invoke(app, ["transfer", str(pair / "c.png"), str(pair / "s.png"), "-o", str(out), "--config",
                               str(pair / "tiny.toml"), "-q", *extra])


def batch(pair, outdir, *extra, manifest="m.csv"):
    return runner.invoke(app, ["batch", str(pair / manifest), "-o", str(outdir), "--config",
                               str(pair / "tiny.toml"), "-q", *extra])


@pytest.mark.parametrize("masked", [False, True], ids=["no masks", "masks"])
def test_transfer_and_batch_write_the_same_file_with_the_same_metadata(pair, tmp_path, counted, masked):
    masks = ["--content-mask", str(pair / "cm.png"), "--style-mask", str(pair / "sm.png")] if masked else []
    result = transfer(pair, tmp_path / "t.png", *masks)
    assert result.exit_code == 0, (result.output, result.exception)
    # one memory check (the content's), one decode of each photo
    photos = sorted([str(pair / "c.png"), str(pair / "s.png")])
    assert counted["check_result_memory"] == [str(pair / "c.png")]
    assert sorted(counted["read_photo"]) == photos
    counted["check_result_memory"].clear()
    counted["read_photo"].clear()
    result = batch(pair, tmp_path / "out", manifest="masked.csv" if masked else "m.csv")
    assert result.exit_code == 0, (result.output, result.exception)
    assert counted["check_result_memory"] == [str(pair / "c.png")]
    assert sorted(counted["read_photo"]) == photos

    made = {"transfer": tmp_path / "t.png", "batch": tmp_path / "out" / "b.png"}
    pixels = {k: np.asarray(Image.open(p)) for k, p in made.items()}
    np.testing.assert_array_equal(pixels["transfer"], pixels["batch"])
    expected = np.round(look_of(reading.load_image(pair / "c.png")) * 255)
    assert np.abs(pixels["batch"].astype(int) - expected).max() <= 1  # the stand-in solve's image, written

    meta = {k: writing.read_metadata(p) for k, p in made.items()}
    assert set(meta["transfer"]) == set(meta["batch"])
    assert meta["batch"]["jaxstyle"] == meta["transfer"]["jaxstyle"] == __version__
    for key in ("content", "style", "content_mask", "style_mask", "masks", "size", "working_size", "config",
                "status", "notes", "weights"):
        assert meta["transfer"][key] == meta["batch"][key], key
    assert meta["batch"]["size"] == [H, W] and meta["batch"]["working_size"] == [16, 24]
    assert meta["batch"]["status"] == STATUS
    assert meta["batch"]["content_mask"] == (str(pair / "cm.png") if masked else None)
    # the seconds of each phase: the solve's, and the content's reading counted as setup
    for name in ("transfer", "batch"):
        seconds = meta[name]["seconds"]
        assert set(seconds) == set(SECONDS), name
        assert seconds["stage1"] == SECONDS["stage1"] and seconds["setup"] >= SECONDS["setup"], name


def test_batch_outputs_record_the_version_and_seconds(pair, tmp_path, counted):
    assert batch(pair, tmp_path / "out").exit_code == 0
    meta = writing.read_metadata(tmp_path / "out" / "b.png")
    assert meta["jaxstyle"] == __version__
    assert set(meta["seconds"]) == set(SECONDS) and all(v >= 0 for v in meta["seconds"].values())
    (item,) = R.read_summary(tmp_path / "out")["items"]
    assert item["status"] == "done" and item["seconds"] >= 0


def test_the_interrupted_image_keeps_the_photo_depth_like_the_result(pair, tmp_path, monkeypatch):
    """`transfer`'s two writes (the result, the best image at Ctrl-C) go through `job.write_result`."""
    from jaxstyle.errors import Interrupted

    writing.save_image(synthetic_photo(H, W, 0), pair / "c.png", bits=16, overwrite=True)

    def interrupted(content, *args, **kwargs):
        raise Interrupted("interrupted during stage1", best_image=look_of(content))

    monkeypatch.setattr(single, "stylize", interrupted)
    result = transfer(pair, tmp_path / "t.png")
    assert result.exit_code == 130, (result.output, result.exception)
    kept = tmp_path / "t.interrupted.png"
    assert kept.read_bytes()[24] == 16  # IHDR bit depth: the photo's own
    meta = writing.read_metadata(kept)
    assert meta["jaxstyle"] == __version__ and meta["status"] == "interrupted during stage1"
    assert meta["content"] == str(pair / "c.png") and meta["masks"] == "given"


def test_run_job_is_the_same_file_to_file_call(pair, tmp_path, counted):
    assert transfer(pair, tmp_path / "t.png").exit_code == 0
    result = job.run_job(pair / "c.png", pair / "s.png", tmp_path / "j.png", config=str(pair / "tiny.toml"))
    assert result.status == STATUS
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "j.png")),
                                  np.asarray(Image.open(tmp_path / "t.png")))
    meta, reference = writing.read_metadata(tmp_path / "j.png"), writing.read_metadata(tmp_path / "t.png")
    assert set(meta) == set(reference)
    assert {k: meta[k] for k in ("config", "size", "working_size", "status", "weights", "content")} == {
        k: reference[k] for k in ("config", "size", "working_size", "status", "weights", "content")}
    counted["read_photo"].clear()
    with pytest.raises(JaxstyleError, match="refusing to write the result over the input"):
        job.run_job(pair / "c.png", pair / "s.png", pair / "c.png", config=str(pair / "tiny.toml"), force=True)
    assert counted["read_photo"] == []  # refused before any read


# ----------------------------------------------------------------------------- the same-file rule


def test_refuse_input_as_output_sees_paths_and_links(tmp_path):
    photo = tmp_path / "c.png"
    writing.save_image(synthetic_photo(8, 8), photo)
    (tmp_path / "sub").mkdir()
    os.symlink(photo, tmp_path / "sub" / "soft.png")
    os.link(photo, tmp_path / "hard.png")
    inputs = {"content": photo, "style": tmp_path / "s.png", "content_mask": None, "style_mask": None}
    for output in (photo, tmp_path / "sub" / ".." / "c.png", tmp_path / "sub" / "soft.png", tmp_path / "hard.png"):
        with pytest.raises(JaxstyleError, match=r"refusing to write the result over the input .*c\.png "
                                                r"\(the content\): choose another -o \(--force never"):
            job.refuse_input_as_output(output, inputs)
    with pytest.raises(JaxstyleError, match=r"over the input .*s\.png \(the style\)"):  # not written yet: by path
        job.refuse_input_as_output(tmp_path / "s.png", inputs)
    job.refuse_input_as_output(tmp_path / "new.png", inputs)  # another file: no error


def test_check_new_file_says_what_is_wrong_before_any_work(tmp_path):
    """The rule for every file a job writes (the result, --save-look, --cube), in one wording."""
    photo, result, look = tmp_path / "c.png", tmp_path / "r.png", tmp_path / "l.npz"
    writing.save_image(synthetic_photo(8, 8), photo)
    protect = {"content": photo, "style": tmp_path / "s.png", "content_mask": None, "style_mask": None,
               "result": result}

    def refused(path, force=False):
        with pytest.raises(JaxstyleError) as caught:
            job.check_new_file(path, protect, name="--save-look", what=f"--save-look {path}", suffixes=(".npz",),
                               option="--save-look", force=force)
        return str(caught.value)

    assert refused(tmp_path / "l.cube") == f"--save-look {tmp_path / 'l.cube'} must end in .npz"
    assert "the folder of --save-look" in refused(tmp_path / "no" / "l.npz")
    os.link(photo, tmp_path / "c.npz")
    assert "over the input " + str(photo) + " (the content)" in refused(tmp_path / "c.npz", force=True)
    protect["result"] = look  # the result's own path (not written yet) is protected too
    assert refused(look, force=True) == (f"refusing to write --save-look {look} over the result {look}: "
                                         "choose another --save-look")
    protect["result"] = result
    look.write_bytes(b"old")
    assert refused(look) == f"{look} exists: pass --force to replace it, or choose another --save-look"
    assert job.check_new_file(look, protect, name="--save-look", what="--save-look", suffixes=(".npz",),
                              option="--save-look", force=True) == look
    with pytest.raises(JaxstyleError, match="must end in .png, .jpg or .jpeg"):
        job.check_output(tmp_path / "r.gif", protect)


def test_metadata_has_one_schema():
    from jaxstyle.config import load_config

    cfg = load_config("fast")
    meta = job.result_metadata(job.describe("c.png", "s.png"), size=(4, 6, 3), working_size=(2, 3, 3), config=cfg,
                               status=STATUS, seconds={"total": 1.23456}, notes=("n",), weights={"arch": "vgg16"},
                               extra=1)
    assert meta == {"content": "c.png", "style": "s.png", "content_mask": None, "style_mask": None, "masks": "given",
                    "jaxstyle": __version__, "size": [4, 6], "working_size": [2, 3], "config": cfg.to_dict(),
                    "status": STATUS, "seconds": {"total": 1.235}, "notes": ["n"], "weights": {"arch": "vgg16"},
                    "extra": 1}
    json.dumps(meta)


# ----------------------------------------------------------------------------- the real solve


@pytest.mark.slow  # two compiles of the solve (single and batched), ~21 s on 2 cores; the fast tests above
def test_transfer_and_batch_agree_with_the_real_solve(pair, tmp_path):
    assert transfer(pair, tmp_path / "t.png").exit_code == 0
    assert batch(pair, tmp_path / "out", "--batch-size", 1).exit_code == 0
    made = {"transfer": tmp_path / "t.png", "batch": tmp_path / "out" / "b.png"}
    pixels = {k: np.asarray(Image.open(p)).astype(int) for k, p in made.items()}
    # one item a batch: the same programs' arithmetic (two items may differ by a level: test_paths_agree)
    np.testing.assert_array_equal(pixels["transfer"], pixels["batch"])
    meta = {k: writing.read_metadata(p) for k, p in made.items()}
    assert set(meta["transfer"]) == set(meta["batch"])
    for key in ("content", "style", "size", "working_size", "config", "status", "weights", "jaxstyle"):
        assert meta["transfer"][key] == meta["batch"][key], key
    assert set(meta["transfer"]["seconds"]) == set(meta["batch"]["seconds"])
