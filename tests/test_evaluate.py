"""jaxstyle.evaluate and `jaxstyle evaluate`: metrics from files equal metrics.evaluate_triple on
the same arrays, resizing to the output's size, manifests and folders with bad rows, contact
sheets, loss plots, and the CLI's JSON, sheet and exit codes.

All images are tiny PNGs written in tmp_path; two image-size / mask / reference combinations
are used throughout so the jitted metrics compile twice.
"""

import json
import math
import sys

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from jaxstyle import evaluate as E
from jaxstyle import reading, sheets, sizing, writing
from jaxstyle.cli import app
from jaxstyle.errors import JaxstyleError
from jaxstyle.masks import parse_mask_pair
from jaxstyle.metrics import METRIC_KEYS, REFERENCE_KEYS, evaluate_triple
from conftest import synthetic_photo, two_region_mask

H, W = 40, 48  # content / output
HS, WS = 36, 44  # style
BLUE, GREEN = (0, 0, 255), (0, 255, 0)


def colour_mask(h: int, w: int, seed: int) -> np.ndarray:
    """uint8 [h, w, 3] palette mask: blue sky, green ground (two_region_mask's regions)."""
    sky = two_region_mask(h, w, seed)[..., 0] > 0.5
    return np.where(sky[..., None], np.array(BLUE, np.uint8), np.array(GREEN, np.uint8)).astype(np.uint8)


def save(path, image) -> str:
    writing.save_image(image, path, overwrite=True)
    return str(path)


@pytest.fixture
def files(tmp_path):
    """A content/style/output/reference set with palette masks, as PNG files."""
    content = synthetic_photo(H, W, seed=0)
    output = np.clip(0.8 * content + 0.1 * synthetic_photo(H, W, seed=3), 0, 1)
    paths = {
        "content": save(tmp_path / "a_content.png", content),
        "style": save(tmp_path / "a_style.png", synthetic_photo(HS, WS, seed=1)),
        "output": save(tmp_path / "a_output.png", output),
        "reference": save(tmp_path / "a_reference.png", synthetic_photo(H, W, seed=2)),
    }
    for name, (h, w, seed) in {"content_mask": (H, W, 0), "style_mask": (HS, WS, 1)}.items():
        Image.fromarray(colour_mask(h, w, seed)).save(tmp_path / f"a_{name}.png")
        paths[name] = str(tmp_path / f"a_{name}.png")
    return paths


def expected(paths, *, masks: bool, reference: bool, vgg16, max_side=None) -> dict:
    """metrics.evaluate_triple on the arrays the files hold (the reference computation)."""
    content = reading.load_image(paths["content"], max_side=max_side)
    style = reading.load_image(paths["style"], max_side=max_side)
    output = reading.load_image(paths["output"], max_side=max_side)
    kwargs = {}
    if masks:
        pair = parse_mask_pair(paths["content_mask"], paths["style_mask"])
        kwargs = {"content_mask": pair.content, "style_mask": pair.style}
    if reference:
        kwargs["reference"] = reading.load_image(paths["reference"], max_side=max_side)
    return evaluate_triple(vgg16, content, style, output, **kwargs)


# ----------------------------------------------------------------------------- evaluate_files


@pytest.mark.slow  # compile-heavy; keeps the default suite under 5 minutes on 2 cores: CI runs it via -m slow
def test_files_equal_evaluate_triple_with_masks_and_reference(files, vgg16):
    got = E.evaluate_files(files["content"], files["style"], files["output"], content_mask=files["content_mask"],
                           style_mask=files["style_mask"], reference=files["reference"], weights=vgg16)
    assert tuple(got) == METRIC_KEYS + REFERENCE_KEYS
    assert got == expected(files, masks=True, reference=True, vgg16=vgg16)
    assert all(isinstance(v, float) and math.isfinite(v) for v in got.values())


@pytest.mark.slow  # compile-heavy: keeps the default suite under 5 minutes; CI runs it via -m slow
def test_files_without_masks_or_reference(files, vgg16):
    got = E.evaluate_files(files["content"], files["style"], files["output"], weights=vgg16)
    assert tuple(got) == METRIC_KEYS
    assert got == expected(files, masks=False, reference=False, vgg16=vgg16)
    # masks change the regional numbers (the masked call above is a different computation)
    masked = E.evaluate_files(files["content"], files["style"], files["output"], weights=vgg16,
                              content_mask=files["content_mask"], style_mask=files["style_mask"],
                              reference=files["reference"])
    assert masked["gram_distance"] != got["gram_distance"]
    assert masked["ssim"] == got["ssim"]  # structure does not depend on the masks


def test_output_equal_to_reference(files, vgg16):
    got = E.evaluate_files(files["content"], files["style"], files["output"], content_mask=files["content_mask"],
                           style_mask=files["style_mask"], reference=files["output"], weights=vgg16)
    assert got["psnr"] == math.inf
    assert got["ssim_reference"] == pytest.approx(1.0, abs=1e-6)
    assert got["lpips"] == pytest.approx(0.0, abs=1e-6)


def test_output_size_is_the_working_size(tmp_path, files, vgg16):
    """Content and reference at twice the output's size are resized to it (= loading them capped)."""
    big = {"content": save(tmp_path / "big_content.png", synthetic_photo(2 * H, 2 * W, seed=0)),
           "reference": save(tmp_path / "big_reference.png", synthetic_photo(2 * H, 2 * W, seed=2)),
           "content_mask": str(tmp_path / "big_content_mask.png")}
    Image.fromarray(colour_mask(2 * H, 2 * W, 0)).save(big["content_mask"])
    got = E.evaluate_files(big["content"], files["style"], files["output"], content_mask=big["content_mask"],
                           style_mask=files["style_mask"], reference=big["reference"], weights=vgg16)
    content = sizing.resize_image(reading.load_image(big["content"]), (H, W))
    pair = parse_mask_pair(big["content_mask"], files["style_mask"], content_shape=(H, W))
    want = evaluate_triple(vgg16, content, reading.load_image(files["style"]), reading.load_image(files["output"]),
                           content_mask=pair.content, style_mask=pair.style,
                           reference=sizing.resize_image(reading.load_image(big["reference"]), (H, W)))
    assert got == want


def test_max_side_caps_output_and_style(tmp_path, vgg16):
    """With max_side the output (the working size) and the style are capped: (80, 96) -> (40, 48)."""
    paths = {"content": save(tmp_path / "c.png", synthetic_photo(2 * H, 2 * W, seed=0)),
             "style": save(tmp_path / "s.png", synthetic_photo(HS, WS, seed=1)),
             "output": save(tmp_path / "o.png", synthetic_photo(2 * H, 2 * W, seed=4))}
    got = E.evaluate_files(paths["content"], paths["style"], paths["output"], max_side=W, weights=vgg16)
    assert got == expected(paths, masks=False, reference=False, vgg16=vgg16, max_side=W)


@pytest.mark.parametrize("what", ["content", "reference"])
def test_other_framing_is_an_error(tmp_path, files, what):
    files = dict(files, **{what: save(tmp_path / "wide.png", synthetic_photo(H, 2 * W))})
    with pytest.raises(JaxstyleError, match=f"{what} is {2 * W}x{H} but the output is {W}x{H}"):
        E.evaluate_files(files["content"], files["style"], files["output"], reference=files["reference"])


def test_one_mask_only_is_an_error(files):
    with pytest.raises(JaxstyleError, match="no style mask"):
        E.evaluate_files(files["content"], files["style"], files["output"], content_mask=files["content_mask"])


# ----------------------------------------------------------------------------- manifests and folders


def test_csv_manifest_with_bad_rows(tmp_path, files, vgg16):
    (tmp_path / "list.csv").write_text(
        "name,content,style,output,content_mask,style_mask,reference\n"
        "good,a_content.png,a_style.png,a_output.png,a_content_mask.png,a_style_mask.png,a_reference.png\n"
        "gone,a_content.png,a_style.png,missing.png,,,\n"
        ",a_content.png,,a_output.png,,,\n"
        "half,a_content.png,a_style.png,a_output.png,a_content_mask.png,,\n")
    seen = []
    items = E.evaluate_manifest(tmp_path / "list.csv", weights=vgg16,
                                on_item=lambda i, n, item: seen.append((i, n, item["name"])))
    assert [i["name"] for i in items] == ["good", "gone", "a_output", "half"]
    assert seen == [(0, 4, "good"), (1, 4, "gone"), (2, 4, "a_output"), (3, 4, "half")]
    good, gone, no_style, half = items
    assert good["error"] is None and good["line"] == 2
    assert good["metrics"] == expected(files, masks=True, reference=True, vgg16=vgg16)
    assert good["content"] == str(tmp_path / "a_content.png")  # relative to the manifest's folder
    assert gone["metrics"] is None and "missing.png: no such file" in gone["error"]
    assert no_style["error"] == "line 4: no style path"
    assert half["error"] == "line 5: give both content_mask and style_mask, or neither"


def test_json_lines_manifest(tmp_path, files, vgg16):
    lines = [{"content": "a_content.png", "style": "a_style.png", "output": files["output"]},  # absolute
             {"content": "a_content.png", "style": "a_style.png", "output": "a_output.png", "refrence": "r.png"},
             "not json {",
             ["a list"],
             {"content": 3, "style": "a_style.png", "output": "a_output.png"}]
    (tmp_path / "list.jsonl").write_text(
        "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n\n")
    items = E.evaluate_manifest(tmp_path / "list.jsonl", weights=vgg16)
    assert items[0]["metrics"] == expected(files, masks=False, reference=False, vgg16=vgg16)
    assert items[0]["name"] == "a_output"
    assert items[1]["error"].startswith("line 2: unknown field 'refrence' (did you mean 'reference'?)")
    assert items[2]["error"].startswith("line 3: not valid JSON")
    assert items[3]["error"] == "line 4: expected a JSON object, got list"
    assert items[4]["error"] == "line 5: content must be a path (a string), got 3"


def test_folder_naming_scheme(tmp_path, files, vgg16):
    save(tmp_path / "b_content.png", synthetic_photo(H, W))  # no b_style, no b_output
    save(tmp_path / "sheet.png", synthetic_photo(H, W))  # not in the scheme: ignored
    (tmp_path / "notes_content.txt").write_text("not an image")  # not an image suffix: ignored
    items = E.evaluate_manifest(tmp_path, weights=vgg16)
    assert [i["name"] for i in items] == ["a", "b"]
    a, b = items
    assert a["content_mask"] == files["content_mask"] and a["reference"] == files["reference"]
    assert a["metrics"] == expected(files, masks=True, reference=True, vgg16=vgg16)
    assert b["metrics"] is None
    assert b["error"] == f"no b_style.*, b_output.* file in {tmp_path}"


def test_folder_duplicate_roles(tmp_path):
    for suffix in (".png", ".jpg"):
        save(tmp_path / f"x_output{suffix}", synthetic_photo(H, W))
    (item,) = E.read_items(tmp_path)
    assert "several x_output files (x_output.jpg, x_output.png): keep one" in item["error"]


@pytest.mark.parametrize("text, match", [
    ("contnt,style,output\na,b,c\n", r"unknown column 'contnt' \(did you mean 'content'\?\)"),
    ("content,style\na,b\n", "the header has no output column"),
    ("", "is empty"),
    ("content,style,output\n", "has no items"),
])
def test_unusable_manifest(tmp_path, text, match):
    (tmp_path / "m.csv").write_text(text)
    with pytest.raises(JaxstyleError, match=match):
        E.read_items(tmp_path / "m.csv")


def test_missing_manifest_and_empty_folder(tmp_path):
    with pytest.raises(JaxstyleError, match="does not exist"):
        E.read_items(tmp_path / "nope.csv")
    with pytest.raises(JaxstyleError, match="NAME_content"):
        E.read_items(tmp_path)


# ----------------------------------------------------------------------------- reports


METRICS = {"ssim": 0.91234, "edge_ssim": 0.87149, "laplacian_residual": 1.23456e-5, "gram_distance": 0.2309,
           "lab_w2": 4.1249, "psnr": math.inf, "ssim_reference": 0.93449, "lpips": 0.12351}


def test_captions_three_significant_digits():
    assert E.sheet_captions(METRICS, "x") == {
        "content": "ssim 0.912 edge 0.871", "style": "gram 0.231 w2 4.12",
        "output": "lap 1.23e-05 (x)", "reference": "psnr inf ssim 0.934 lpips 0.124"}
    no_reference = {k: METRICS[k] for k in METRIC_KEYS}
    assert E.sheet_captions(no_reference)["reference"] == ""


def test_to_json_is_strict_and_round_trips():
    text = E.to_json([{"name": "a", "metrics": METRICS}, {"metrics": {"x": -math.inf, "y": math.nan}}])
    assert "Infinity" not in text and "NaN" not in text
    data = json.loads(text)
    assert data[0]["metrics"]["psnr"] == "inf" and data[0]["metrics"]["ssim"] == METRICS["ssim"]
    assert data[1]["metrics"] == {"x": "-inf", "y": "nan"}


def test_tables():
    table = E.metrics_table(METRICS).splitlines()
    assert len(table) == len(METRICS) and table[0].split()[:2] == ["ssim", "0.912"]
    items = [{"name": "a", "metrics": {k: METRICS[k] for k in METRIC_KEYS}, "error": None},
             {"name": "b", "metrics": METRICS, "error": None},
             {"name": "c", "metrics": None, "error": "line 4: no style path"}]
    header, a, b, c = E.items_table(items).splitlines()
    assert header.split() == ["name", *METRIC_KEYS, *REFERENCE_KEYS]
    assert a.split()[-3:] == ["-", "-", "-"] and b.split()[-3:] == ["inf", "0.934", "0.124"]
    assert c.split(None, 1)[1] == "error: line 4: no style path"


def test_contact_sheet_layout(files):
    images = {k: reading.load_image(files[k]) for k in ("content", "style", "output", "reference")}
    rows = [dict(images, name="with reference"), {k: files[k] for k in ("content", "style", "output")},
            {k: files[k] for k in ("content", "style", "output")}]
    height, gap = 30, 4
    sheet = E.contact_sheet(rows, [METRICS, METRICS, None], height=height, gap=gap)
    first = sheets.side_by_side(list(images.values()), height=height, gap=gap,
                                labels=list(E.sheet_captions(METRICS, "with reference").values()))
    second = sheets.side_by_side([images[k] for k in ("content", "style", "output")], height=height, gap=gap,
                                 labels=list(E.sheet_captions(METRICS).values())[:3])
    # the failed third item is skipped; the narrower second row is padded with white
    assert sheet.shape == (2 * first.shape[0] + gap, first.shape[1], 3)
    np.testing.assert_allclose(sheet[:first.shape[0]], first, atol=1e-6)
    below = sheet[first.shape[0] + gap:]
    np.testing.assert_allclose(below[:, :second.shape[1]], second, atol=1e-6)
    assert np.all(below[:, second.shape[1]:] == 1.0)
    # the tile is the image itself (H < 2 * height: upscaled by sizing.resize_image)
    np.testing.assert_allclose(sheet[:height, :round(W * height / H)],
                               sizing.resize_image(images["content"], (height, round(W * height / H))), atol=1e-6)
    with pytest.raises(JaxstyleError, match="every item failed"):
        E.contact_sheet(rows[:1], [None])
    with pytest.raises(JaxstyleError, match="2 rows but 1 metric"):
        E.contact_sheet(rows[:2], [METRICS])


# ----------------------------------------------------------------------------- loss curves


def write_log(path, stages=(("stage1", 5), ("stage2", 3))):
    with open(path, "w") as f:
        for stage, n in stages:
            for i in range(n):
                f.write(json.dumps({"stage": stage, "iteration": 10 * i, "loss": 100.0 / (i + 1), "best_loss": 1.0,
                                    "content": 1.0 + i, "style": 50.0 / (i + 1), "tv": 0.1, "photo": 0.0}) + "\n")
    return path


def test_read_log(tmp_path):
    curves = E.read_log(write_log(tmp_path / "run.log"))
    assert list(curves) == ["stage1", "stage2"]
    np.testing.assert_array_equal(curves["stage1"]["iteration"], [0, 10, 20, 30, 40])
    np.testing.assert_allclose(curves["stage2"]["loss"], [100.0, 50.0, 100.0 / 3])
    assert set(curves["stage2"]) == {"iteration", "loss", "content", "style", "tv", "photo"}
    (tmp_path / "bad.log").write_text('{"stage": "s", "iteration": 0, "loss": 1}\n{oops\n')
    with pytest.raises(JaxstyleError, match="line 2: not valid JSON"):
        E.read_log(tmp_path / "bad.log")
    (tmp_path / "empty.log").write_text("\n")
    with pytest.raises(JaxstyleError, match="is empty"):
        E.read_log(tmp_path / "empty.log")


def test_plot_log_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    out = E.plot_log(write_log(tmp_path / "run.log"), tmp_path / "loss.png")
    with Image.open(out) as im:
        assert im.format == "PNG" and im.width > im.height > 100  # two panels side by side


def test_plot_log_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails as if not installed
    with pytest.raises(JaxstyleError, match=r"pip install 'jaxstyle\[plot\]'"):
        E.plot_log(write_log(tmp_path / "run.log"), tmp_path / "loss.png")
    with pytest.raises(JaxstyleError, match="must end in"):
        E.plot_log(tmp_path / "run.log", tmp_path / "loss.txt")


# ----------------------------------------------------------------------------- CLI


def test_cli_single_triple_writes_json_and_sheet(tmp_path, files, vgg16):
    args = ["evaluate", "--content", files["content"], "--style", files["style"], "--output", files["output"],
            "--content-mask", files["content_mask"], "--style-mask", files["style_mask"],
            "--reference", files["reference"], "--json", str(tmp_path / "m.json"), "--sheet", str(tmp_path / "s.png")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "m.json").read_text())
    assert tuple(data) == METRIC_KEYS + REFERENCE_KEYS
    assert data == expected(files, masks=True, reference=True, vgg16=vgg16)
    table = [line.split()[:2] for line in result.stdout.splitlines()]
    assert table == [[k, E.format_value(data[k])] for k in METRIC_KEYS + REFERENCE_KEYS]
    with Image.open(tmp_path / "s.png") as im:
        assert im.format == "PNG" and im.height > E.SHEET_HEIGHT and im.width > 3 * E.SHEET_HEIGHT


def test_cli_manifest_with_a_bad_row_exits_3(tmp_path, files, vgg16):
    (tmp_path / "list.csv").write_text("content,style,output\na_content.png,a_style.png,a_output.png\n"
                                       "a_content.png,a_style.png,nope.png\n")
    result = CliRunner().invoke(app, ["evaluate", "--manifest", str(tmp_path / "list.csv"),
                                      "--json", str(tmp_path / "m.json"), "--sheet", str(tmp_path / "s.png")])
    assert result.exit_code == 3, result.output
    items = json.loads((tmp_path / "m.json").read_text())
    assert items[0]["metrics"] == expected(files, masks=False, reference=False, vgg16=vgg16)
    assert items[1]["metrics"] is None and "nope.png: no such file" in items[1]["error"]
    assert "1 of 2 items failed" in result.stderr
    assert (tmp_path / "s.png").is_file()


def test_cli_plot(tmp_path):
    pytest.importorskip("matplotlib")
    log = write_log(tmp_path / "run.log")
    result = CliRunner().invoke(app, ["evaluate", "--plot", str(log)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run.png").is_file()


@pytest.mark.parametrize("args, message", [
    (["--content", "{d}/nope.png", "--style", "{style}", "--output", "{output}"], "nope.png: no such file"),
    (["--content", "{content}", "--style", "{style}"], "missing --output"),
    (["--manifest", "{d}", "--content", "{content}"], "not both"),
    ([], "nothing to evaluate"),
    (["--manifest", "{d}/none.csv"], "does not exist"),
    (["--plot", "{d}/none.log"], "no such file"),
    (["--content", "{content}", "--style", "{style}", "--output", "{output}", "--json", "{d}/no/m.json"],
     "does not exist; create it first"),
    (["--content", "{content}", "--style", "{style}", "--output", "{output}", "--json", "{content}"],
     "over one of the inputs"),
])
def test_cli_bad_input_exits_2_with_one_line(tmp_path, files, args, message):
    fields = dict(files, d=str(tmp_path))
    result = CliRunner().invoke(app, ["evaluate", *(a.format(**fields) for a in args)])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert message in result.stderr


@pytest.fixture
def large_triple(tmp_path, monkeypatch):
    """A 1500x1200 output with its content and a 600x400 style; the metrics only record their shapes."""
    paths = {"content": tmp_path / "c.png", "style": tmp_path / "s.png", "output": tmp_path / "o.png"}
    for name, (h, w) in (("content", (1200, 1500)), ("style", (400, 600)), ("output", (1200, 1500))):
        writing.save_image(synthetic_photo(h, w, len(name)), paths[name])
    shapes = []

    def metrics(weights, content, style, output, **kwargs):
        shapes.append((content.shape[:2], style.shape[:2], output.shape[:2]))
        return {k: 0.0 for k in METRIC_KEYS}

    monkeypatch.setattr(E, "evaluate_triple", metrics)
    return paths, shapes


def run_evaluate(paths, *extra):
    args = ["evaluate", "--content", paths["content"], "--style", paths["style"], "--output", paths["output"], *extra]
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("extra, output_hw", [((), (819, 1024)), (("--max-side", 0), (1200, 1500)),
                                              (("--max-side", 300), (240, 300))])
def test_the_command_scores_at_1024_px_unless_told(large_triple, extra, output_hw):
    paths, shapes = large_triple
    result = run_evaluate(paths, *extra)
    assert result.exit_code == 0, (result.output, result.exception)
    style_hw = (400, 600) if max(output_hw) >= 600 else sizing.fit_max_side(400, 600, max(output_hw))
    assert shapes == [(output_hw, style_hw, output_hw)]


def test_an_evaluation_too_large_for_the_memory_is_refused_before_any_work(large_triple, monkeypatch):
    paths, shapes = large_triple
    have = 2 * 2**30
    monkeypatch.setattr(sizing, "available_memory", lambda: have)
    result = run_evaluate(paths, "--max-side", 0)
    assert result.exit_code == 2 and shapes == [], (result.output, result.exception)
    assert result.stderr.startswith(f"error: evaluating {paths['output']} at 1500x1200 needs about")
    side = int(result.stderr.split("pass --max-side ")[1].split()[0])
    E.check_evaluation_memory(paths["output"], paths["style"], max_side=side)  # the advice fits
    per_pixel = sizing.BYTES_PER_COPY_PIXEL * E.EVAL_COPIES
    h, w = sizing.fit_max_side(1200, 1500, side + 2)
    assert (h * w + 400 * 600) * per_pixel > have  # and is the largest that does, to a pixel or two
    with pytest.raises(JaxstyleError, match="pass --max-side"):
        E.check_evaluation_memory(paths["output"], paths["style"], max_side=side + 2)
