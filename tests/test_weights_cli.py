"""`jaxstyle weights list|import|fetch` through typer's CliRunner: exit codes (0 ok, 2 bad
input with one line on stderr and no traceback) and what lands in the cache."""

import hashlib
import json

import numpy as np
import pytest
from typer.testing import CliRunner

import _weightfiles as F
from jaxstyle import cli, vgg
from jaxstyle import weights as W
from jaxstyle.cachedirs import CACHE_ENV

runner = CliRunner()
TV_VGG16 = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)


@pytest.fixture(scope="module")
def vgg16_pth(tmp_path_factory):
    """The bundled VGG-16 written as a torchvision .pth (zip format)."""
    params = W.embedded_vgg16().params
    names = [s.name for s in vgg.layer_specs("vgg16") if s.kind == "conv"]
    return F.save_torch(tmp_path_factory.mktemp("cli") / "vgg16.pth", F.torchvision_state(params, names, TV_VGG16))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(root))
    monkeypatch.delenv(W.URL_ENV, raising=False)
    W.resolve_weights.cache_clear()
    yield root
    W.resolve_weights.cache_clear()


def invoke(*args):
    return runner.invoke(cli.app, ["weights", *args])


def assert_bad_input(result, match: str):
    """Exit 2, exactly one 'error: ...' line on stderr, nothing on stdout, no traceback."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert match in lines[0], lines[0]
    assert result.stdout == "" and "Traceback" not in result.output


def test_list_empty_cache(cache):
    result = invoke("list")
    assert result.exit_code == 0, result.output
    assert f"cache: {cache / 'weights'}" in result.stdout
    assert "bundled  vgg16  torchvision" in result.stdout
    assert "jaxstyle weights fetch vgg19" in result.stdout and "not in cache" in result.stdout
    data = json.loads(invoke("list", "--json").stdout)
    assert [w["source"] for w in data["weights"]] == ["bundled"]
    assert data["fetchable"]["vgg19"]["url"] == "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
    assert data["fetchable"]["vgg16"]["url"] == "https://download.pytorch.org/models/vgg16-397923af.pth"


def test_import_then_list(cache, vgg16_pth):
    result = invoke("import", str(vgg16_pth), "--convention", "caffe")
    assert result.exit_code == 0, result.output
    out = W.cached_weights_path("vgg16")
    assert result.stdout == f"imported {vgg16_pth}: vgg16, caffe preprocessing -> {out}\n"
    assert W.npz_metadata(out) == ("vgg16", "caffe")
    listing = invoke("list", "--json")
    rows = {(w["source"], w["arch"]): w for w in json.loads(listing.stdout)["weights"]}
    assert rows[("cache", "vgg16")]["size_bytes"] == out.stat().st_size
    assert rows[("cache", "vgg16")]["convention"] == "caffe"
    assert "cache    vgg16  caffe" in invoke("list").stdout


def test_import_bad_inputs_exit_2_with_one_line(cache, vgg16_pth, tmp_path):
    assert_bad_input(invoke("import", str(tmp_path / "missing.pth")), "does not exist")
    assert_bad_input(invoke("import", str(vgg16_pth), "--arch", "vgg19"), "it is a vgg16 checkpoint, not vgg19")
    assert_bad_input(invoke("import", str(vgg16_pth), "--sha256", "0" * 64), "checksum mismatch")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all")
    assert_bad_input(invoke("import", str(junk)), "unrecognised weights format")
    evil = F.write_torch_zip(tmp_path / "evil.pth", None, [], pickle_bytes=b"\x80\x02cposix\nsystem\n.")
    assert_bad_input(invoke("import", str(evil)), "refusing to load posix.system")
    assert not (cache / "weights").exists() or list((cache / "weights").iterdir()) == []


def test_fetch_ok_and_failures(cache, vgg16_pth):
    data = vgg16_pth.read_bytes()
    name = f"vgg16-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    with F.serve({f"/m/{name}": (data, "ok"), f"/cut/{name}": (data, "cut")}) as base:
        assert_bad_input(invoke("fetch", "vgg16", "--url", f"{base}/m/vgg16-00000000.pth"), "HTTP 404")
        assert_bad_input(invoke("fetch", "vgg16", "--url", f"{base}/cut/{name}", "-q"), "was cut off after")
        assert_bad_input(invoke("fetch", "vgg16", "--url", f"{base}/m/{name}", "--sha256", "f" * 64, "-q"),
                         "checksum mismatch")
        assert list(cache.rglob("*.*")) == []
        result = invoke("fetch", "vgg16", "--url", f"{base}/m/{name}")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"fetched vgg16 -> {W.cached_weights_path('vgg16')}\n"
    assert "downloading vgg16: 100%" in result.stderr
    np.testing.assert_array_equal(W.load_npz(W.cached_weights_path("vgg16")).params["conv5_3"]["kernel"],
                                  W.embedded_vgg16().params["conv5_3"]["kernel"])


def test_fetch_unknown_name(cache):
    assert_bad_input(invoke("fetch", "vgg-19"), "unknown weights 'vgg-19' (did you mean 'vgg19'?)")


def test_import_does_not_replace_cached_weights_without_force(cache, vgg16_pth):
    assert invoke("import", str(vgg16_pth), "--convention", "caffe").exit_code == 0
    out = W.cached_weights_path("vgg16")
    before = out.read_bytes()
    assert_bad_input(invoke("import", str(vgg16_pth)), f"{out} already holds vgg16 weights, which backbone "
                                                       "'vgg16' uses; pass --force")
    assert out.read_bytes() == before and W.npz_metadata(out) == ("vgg16", "caffe")
    result = invoke("import", str(vgg16_pth), "--force")
    assert result.exit_code == 0, result.output
    assert W.npz_metadata(out) == ("vgg16", "torchvision")
