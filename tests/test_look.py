"""Looks that travel: the look as a file (`jaxstyle.look`), the global look as a 3D LUT
(`jaxstyle.cube`), `transfer --save-look/--cube` and `jaxstyle apply`.

One tiny transfer (48 px, 3 + 3 steps, shallow layers) solves a look for the whole module;
everything else is arithmetic on small arrays. LUT lookups are checked against a numpy
trilinear reference written here, against FFmpeg's `lut3d` reading our `.cube` file (the FFmpeg
libraries PyAV bundles), and against colour-science's reader and trilinear application.
"""

import json
from fractions import Fraction
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import _iccprofiles
from conftest import synthetic_photo, tiny_toml
from jaxstyle import cli, cube, grid, look, reading, writing
from jaxstyle.errors import JaxstyleError

runner = CliRunner()
H, W = 32, 48
LEVEL = 1 / 255  # one 8-bit level
TINY = tiny_toml()
EXIF_MAKE = 0x010F


def invoke(*args):
    return runner.invoke(cli.app, [str(a) for a in args])


def error_line(result) -> str:
    """The single `error:` line of a refused run (exit code 2, no traceback)."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def read_pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), np.float32) / 255


def tagged_photo(path: Path, pixels: np.ndarray, icc_profile: bytes | None = None) -> Path:
    """An 8-bit photo file with an EXIF camera make (and an ICC profile when given)."""
    exif = Image.Exif()
    exif[EXIF_MAKE] = "jaxstyle-test"
    options = {"exif": exif.tobytes(), **({"icc_profile": icc_profile} if icc_profile else {})}
    Image.fromarray(np.round(pixels * 255).astype(np.uint8)).save(path, **options)
    return path


@pytest.fixture(scope="module")
def solved(tmp_path_factory):
    """One tiny `transfer --save-look --cube`: its folder and files."""
    folder = tmp_path_factory.mktemp("solved")
    paths = {"content": folder / "content.png", "style": folder / "style.png", "config": folder / "tiny.toml",
             "result": folder / "result.png", "look": folder / "look.npz", "cube": folder / "look.cube"}
    writing.save_image(synthetic_photo(H, W, 0), paths["content"])
    writing.save_image(synthetic_photo(H, W, 3)[..., ::-1], paths["style"])
    paths["config"].write_text(TINY)
    with pytest.MonkeyPatch.context() as mp:  # an empty weights cache: the bundled VGG-16
        mp.setenv("JAXSTYLE_CACHE", str(tmp_path_factory.mktemp("cache")))
        result = invoke("transfer", paths["content"], paths["style"], "-o", paths["result"], "-c", paths["config"],
                        "--save-look", paths["look"], "--cube", paths["cube"], "--cube-size", 9, "-q")
    assert result.exit_code == 0, (result.output, result.exception)
    paths["stderr"] = result.stderr
    return paths


# ----------------------------------------------------------------------------- the look file


def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    grid_ = rng.normal(size=(3, 4, 5, 3, 4)).astype(np.float32)
    path = look.save_look(tmp_path / "a.npz", grid_, metadata={"content": "c.png", "config": {"seed": 1}})
    loaded, metadata = look.load_look(path)
    np.testing.assert_array_equal(loaded, grid_)
    assert loaded.dtype == np.float32
    assert metadata["content"] == "c.png" and metadata["config"] == {"seed": 1}
    assert metadata["format"] == look.FORMAT and metadata["shape"] == [3, 4, 5, 3, 4]
    with pytest.raises(JaxstyleError, match="exists: pass --force"):
        look.save_look(path, grid_, metadata={})
    look.save_look(path, 2 * grid_, metadata={}, overwrite=True)
    np.testing.assert_array_equal(look.load_look(path)[0], 2 * grid_)
    assert listing(tmp_path) == ["a.npz"]  # no temporary file left behind


@pytest.mark.parametrize("make", [
    lambda p: np.savez(p, a=np.zeros(3)),
    lambda p: np.savez(p, look=np.zeros((3, 3)), metadata=np.asarray(json.dumps({"format": look.FORMAT}))),
    lambda p: np.savez(p, look=np.zeros((2, 2, 2, 3, 4)), metadata=np.asarray("{}")),
    lambda p: np.savez(p, look=np.full((2, 2, 2, 3, 4), np.nan),
                       metadata=np.asarray(json.dumps({"format": look.FORMAT}))),
    lambda p: p.write_text("not a zip"),
], ids=["other arrays", "wrong shape", "not a look's metadata", "NaN", "not an npz"])
def test_not_a_look_refused(tmp_path, make):
    path = tmp_path / "other.npz"
    make(path)
    with pytest.raises(JaxstyleError, match=r"other\.npz.*(--save-look|make it again)"):
        look.load_look(path)


def test_missing_look_refused(tmp_path):
    with pytest.raises(JaxstyleError, match="no such file"):
        look.load_look(tmp_path / "none.npz")


def test_identity_look_gives_back_the_photo():
    photo = synthetic_photo(37, 53, 1)
    identity = np.asarray(grid.identity_grid((3, 4, 2)))
    np.testing.assert_allclose(look.apply_look(identity, photo), photo, atol=1e-6)


# ----------------------------------------------------------------------------- transfer --save-look --cube


def test_transfer_writes_the_look_and_the_cube(solved):
    grid_, metadata = look.load_look(solved["look"])
    assert metadata["content"] == str(solved["content"]) and metadata["style"] == str(solved["style"])
    assert metadata["config"]["grid"]["enabled"] and metadata["grid"] == {"cell": 8, "depth": 8}
    assert metadata["size"] == [H, W] and metadata["jaxstyle"]
    # the result is the look sliced under the content, written in 8 bits
    content = reading.read_photo(solved["content"]).pixels
    np.testing.assert_allclose(read_pixels(solved["result"]), grid.slice_grid_host(grid_, content),
                               atol=LEVEL / 2 + 1e-6)
    lut = cube.read_cube(solved["cube"])
    assert lut.shape == (9, 9, 9, 3)
    saved = writing.read_metadata(solved["result"])
    assert saved["look_file"] == str(solved["look"]) and saved["cube"]["size"] == 9
    psnr = saved["cube"]["psnr_db"]
    assert f"{psnr:.2f} dB" in solved["stderr"]
    lut_image = cube.apply_cube_host(lut, content)
    measured = -10 * np.log10(np.mean((lut_image - read_pixels(solved["result"])) ** 2))
    assert abs(measured - psnr) < 0.5 and psnr > 25, (measured, psnr)


def test_apply_equals_the_slice_at_any_size(solved, tmp_path):
    grid_, _ = look.load_look(solved["look"])
    other = synthetic_photo(45, 30, 5)
    other_path = tagged_photo(tmp_path / "other.png", other)
    written = look.apply_files(solved["look"], [solved["content"], other_path], tmp_path / "out")
    assert [p.name for p in written] == ["content.png", "other.png"]
    content = reading.read_photo(solved["content"]).pixels
    for path, photo in zip(written, (content, read_pixels(other_path))):
        out = read_pixels(path)
        assert out.shape == photo.shape
        np.testing.assert_allclose(out, grid.slice_grid_host(grid_, photo), atol=LEVEL / 2 + 1e-6)
    np.testing.assert_allclose(read_pixels(written[0]), read_pixels(solved["result"]), atol=LEVEL + 1e-6)
    assert writing.read_metadata(written[1])["look"] == str(solved["look"])


def test_transfer_refuses_a_look_it_cannot_save(solved, tmp_path):
    common = [solved["content"], solved["style"], "-o", tmp_path / "r.png"]
    line = error_line(invoke("transfer", *common, "-c", "fast", "--save-look", tmp_path / "l.npz"))
    assert "no look" in line and "grid.project=true" in line
    assert "must end in .npz" in error_line(invoke("transfer", *common, "--save-look", tmp_path / "l.cube"))
    assert "--cube-size" in error_line(invoke("transfer", *common, "--cube", tmp_path / "l.cube",
                                              "--cube-size", 1))
    (tmp_path / "old.cube").write_text("x")
    assert "exists" in error_line(invoke("transfer", *common, "--cube", tmp_path / "old.cube"))
    assert listing(tmp_path) == ["old.cube"]


# ----------------------------------------------------------------------------- the LUT


def trilinear_reference(lut: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Trilinear interpolation of a LUT `[N, N, N, 3]` (indexed [r, g, b]) at `colours [P, 3]`,
    one corner at a time from the textbook formula."""
    n = lut.shape[0]
    u = np.clip(colours, 0, 1) * (n - 1)
    i = np.minimum(np.floor(u).astype(int), n - 2)
    f = u - i
    out = np.zeros_like(colours, dtype=np.float64)
    for dr in (0, 1):
        for dg in (0, 1):
            for db in (0, 1):
                w = ((f[:, 0] if dr else 1 - f[:, 0]) * (f[:, 1] if dg else 1 - f[:, 1])
                     * (f[:, 2] if db else 1 - f[:, 2]))
                out += w[:, None] * lut[i[:, 0] + dr, i[:, 1] + dg, i[:, 2] + db]
    return out


@pytest.mark.parametrize("size", [2, 5, 17])
@pytest.mark.parametrize("way", ["eager", "jit", "vmap"])
def test_apply_cube_against_numpy(size, way):
    rng = np.random.default_rng(size)
    lut = rng.uniform(size=(size, size, size, 3)).astype(np.float32)
    colours = rng.uniform(-0.1, 1.1, size=(4, 50, 3)).astype(np.float32)  # some outside [0, 1]
    colours[0, :8] = [[0, 0, 0], [1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.5, 0.5], [1, 0.5, 0],
                      [0.25, 1, 0.75]]
    if way == "eager":
        got = cube.apply_cube(lut, colours)
    elif way == "jit":
        got = jax.jit(cube.apply_cube)(lut, colours)
    else:
        got = jax.vmap(cube.apply_cube, in_axes=(None, 0))(lut, colours)
    want = trilinear_reference(lut, colours.reshape(-1, 3)).reshape(colours.shape)
    np.testing.assert_allclose(np.asarray(got), want, atol=2e-6)


def test_apply_cube_host_matches_and_is_linear_in_the_lut():
    rng = np.random.default_rng(1)
    lut = rng.uniform(size=(5, 5, 5, 3)).astype(np.float32)
    photo = synthetic_photo(21, 34, 2)
    want = trilinear_reference(lut, photo.reshape(-1, 3)).reshape(photo.shape)
    np.testing.assert_allclose(cube.apply_cube_host(lut, photo), want, atol=2e-6)
    grad = jax.grad(lambda t: jnp.sum(cube.apply_cube(t, photo)))(jnp.asarray(lut))
    np.testing.assert_allclose(float(jnp.sum(grad)), photo.size, rtol=1e-4)  # the weights sum to 1 a pixel


def test_identity_cube_fits_identity_and_parses_back(tmp_path):
    photo = synthetic_photo(40, 60, 0)
    lut = np.asarray(cube.fit_cube(photo, photo, size=9))
    np.testing.assert_allclose(lut, cube.identity_cube(9), atol=1e-3)
    path = cube.write_cube(tmp_path / "id.cube", lut, title="identity", comments=("a test",))
    lines = path.read_text().splitlines()
    assert lines[:3] == ["# a test", 'TITLE "identity"', "LUT_3D_SIZE 9"]
    assert len(lines) == 3 + 9 ** 3 and not any(line.startswith("DOMAIN") for line in lines)
    first = np.asarray([[float(v) for v in line.split()] for line in lines[3:5]])
    np.testing.assert_allclose(first, [[0, 0, 0], [0.125, 0, 0]], atol=1e-3)  # red changes fastest
    np.testing.assert_allclose(cube.read_cube(path), lut, atol=1e-6)
    with pytest.raises(JaxstyleError, match="exists"):
        cube.write_cube(path, lut)


def test_fit_cube_reproduces_a_global_affine_map():
    photo = synthetic_photo(48, 64, 4)
    matrix = np.asarray([[0.9, 0.15, -0.05], [0.05, 0.8, 0.1], [-0.1, 0.2, 0.7]], np.float32)
    target = photo @ matrix.T + np.asarray([0.05, 0.02, 0.1], np.float32)
    assert target.min() >= 0 and target.max() <= 1
    lut = cube.fit_cube(photo, target, size=17)
    mse = float(jnp.mean(jnp.square(cube.apply_cube(lut, photo) - target)))
    assert -10 * np.log10(mse) > 40


@pytest.mark.parametrize("text, match", [
    ("LUT_1D_SIZE 4\n", "1D LUT"),
    ("LUT_3D_SIZE 2\n0 0 0\n", "needs 8 lines"),
    ("DOMAIN_MAX 2 2 2\nLUT_3D_SIZE 2\n", r"\[0, 1\] only"),
    ("LUT_3D_SIZE 2\n0 0\n", "three numbers"),
    ("hello\n", "neither a keyword"),
    ("# nothing\n", "no LUT_3D_SIZE"),
])
def test_bad_cube_files_refused(tmp_path, text, match):
    path = tmp_path / "bad.cube"
    path.write_text(text)
    with pytest.raises(JaxstyleError, match=match):
        cube.read_cube(path)


def _test_lut(tmp_path):
    """A bent 9-point LUT written as `.cube`, and an 8-bit photo (as float32 levels)."""
    rng = np.random.default_rng(3)
    lut = np.clip(cube.identity_cube(9) ** 1.4 + rng.normal(0, 0.03, (9, 9, 9, 3)), 0, 1).astype(np.float32)
    path = cube.write_cube(tmp_path / "look.cube", lut)
    photo = (np.round(synthetic_photo(24, 40, 6) * 255) / 255).astype(np.float32)
    return path, photo


def test_ffmpeg_lut3d_agrees(tmp_path):
    """FFmpeg's own `lut3d` filter, through the FFmpeg libraries PyAV bundles, reads our file and
    maps an 8-bit photo as `apply_cube` does, within one level."""
    av = pytest.importorskip("av")
    path, photo = _test_lut(tmp_path)
    graph = av.filter.Graph()
    source = graph.add_buffer(width=photo.shape[1], height=photo.shape[0], format="rgb24",
                              time_base=Fraction(1, 1000))
    lut3d = graph.add("lut3d", f"file={path}:interp=trilinear")
    sink = graph.add("buffersink")
    source.link_to(lut3d)
    lut3d.link_to(sink)
    graph.configure()
    graph.push(av.VideoFrame.from_ndarray(np.round(photo * 255).astype(np.uint8), format="rgb24"))
    theirs = graph.pull().to_ndarray(format="rgb24").astype(np.float32) / 255
    ours = cube.apply_cube_host(cube.read_cube(path), photo)
    assert np.abs(theirs - ours).max() <= LEVEL + 1e-6
    assert np.abs(theirs - photo).max() > 10 * LEVEL  # the LUT did change the photo


def test_colour_science_reads_and_applies_our_cube_alike(tmp_path):
    """colour-science's `.cube` reader and trilinear LUT application agree with ours."""
    colour = pytest.importorskip("colour", reason="colour-science is in the test extras")
    path, photo = _test_lut(tmp_path)
    theirs = colour.read_LUT(str(path))
    assert theirs.size == 9
    np.testing.assert_allclose(theirs.table, cube.read_cube(path), atol=1e-6)
    applied = theirs.apply(photo.astype(np.float64),
                           interpolator=colour.algebra.table_interpolation_trilinear)
    ours = cube.apply_cube_host(cube.read_cube(path), photo)
    assert np.abs(applied - ours).max() <= LEVEL


# ----------------------------------------------------------------------------- jaxstyle apply


def test_cli_apply_keeps_icc_and_exif(solved, tmp_path):
    photo = synthetic_photo(30, 40, 7)
    srgb = _iccprofiles.profile(_iccprofiles.SRGB, [_iccprofiles.parametric_tag(3, _iccprofiles.SRGB_PARAMETERS)] * 3,
                                "sRGB as written by the test")
    source = tagged_photo(tmp_path / "shoot.png", photo, icc_profile=srgb)
    identity = look.save_look(tmp_path / "identity.npz", np.asarray(grid.identity_grid((2, 2, 2))), metadata={})
    result = invoke("apply", identity, source, "-o", tmp_path / "out")
    assert result.exit_code == 0, (result.output, result.exception)
    assert "[1/1]" in result.stderr
    out = tmp_path / "out" / "shoot.png"
    with Image.open(out) as im:
        assert im.info.get("icc_profile") == srgb and im.getexif()[EXIF_MAKE] == "jaxstyle-test"
    np.testing.assert_allclose(read_pixels(out), read_pixels(source), atol=LEVEL + 1e-6)  # through the profile and back
    result = invoke("apply", solved["cube"], source, solved["content"], "-o", tmp_path / "cubed", "--format", "jpg")
    assert result.exit_code == 0, (result.output, result.exception)
    assert listing(tmp_path / "cubed") == ["content.jpg", "shoot.jpg"]
    assert read_pixels(tmp_path / "cubed" / "content.jpg").shape == (H, W, 3)


REFUSALS = {
    "missing photo": (lambda s, d: [s["look"], d / "none.png", "-o", d / "out"], "none.png"),
    "unreadable look": (lambda s, d: [s["style"], s["content"], "-o", d / "out"], "not a jaxstyle look"),
    "missing look": (lambda s, d: [d / "none.npz", s["content"], "-o", d / "out"], "no such file"),
    "bad cube": (lambda s, d: [d / "bad.cube", s["content"], "-o", d / "out"], "no LUT_3D_SIZE"),
    "DIR is a file": (lambda s, d: [s["look"], s["content"], "-o", d / "file.txt"], "not a folder"),
    "existing output": (lambda s, d: [s["look"], s["content"], "-o", d / "old"], "--force"),
    "output over an input": (lambda s, d: [s["look"], s["content"], "-o", s["content"].parent, "--force"],
                             "over an input"),
    "two photos, one output": (lambda s, d: [s["look"], s["content"], d / "old" / "content.png", "-o", d / "out"],
                               "both be written"),
    "unwritable suffix": (lambda s, d: [s["look"], s["content"], "-o", d / "out", "--format", "tif"], "--format"),
    "16 bits as JPEG": (lambda s, d: [s["look"], s["content"], "-o", d / "out", "--format", "jpg", "--bits", "16"],
                        "--bits 16"),
}


@pytest.mark.parametrize("case", REFUSALS, ids=list(REFUSALS))
def test_cli_apply_refusals(solved, tmp_path, case):
    args, expected = REFUSALS[case]
    (tmp_path / "file.txt").write_text("a file")
    (tmp_path / "bad.cube").write_text("# no size\n")
    (tmp_path / "old").mkdir()
    tagged_photo(tmp_path / "old" / "content.png", synthetic_photo(H, W, 1))
    before = {p: listing(p) for p in (tmp_path, tmp_path / "old", solved["content"].parent)}
    line = error_line(invoke("apply", *args(solved, tmp_path)))
    assert expected in line, line
    assert {p: listing(p) for p in before} == before  # nothing written
