"""Weights: torch/safetensors/npz readers without torch, conversion to the canonical tree,
refusal of corrupt and malicious files, the cache, downloads from a local HTTP server,
and the resolver's fallback warning.

Real-shaped files are written from the bundled VGG-16 (and random VGG-19 arrays) in
torchvision's layout by `_weightfiles`, which writes the torch/safetensors byte formats
itself; the parsers are also tested on small hand-built files.
"""

import hashlib
import os
import pickle
import shutil
import struct
import warnings
import zipfile
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

import _weightfiles as F
from jaxstyle import checkpoints as C
from jaxstyle import vgg
from jaxstyle import weights as W
from jaxstyle.cachedirs import CACHE_ENV
from jaxstyle.errors import WeightsError

# torchvision's vgg.features indices of the convolutions (from torchvision's cfgs 'D' and 'E').
TV_VGG16 = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
TV_VGG19 = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)
CONVS = {arch: [s.name for s in vgg.layer_specs(arch) if s.kind == "conv"] for arch in vgg.ARCHS}


@pytest.fixture(scope="module")
def bundled():
    return W.embedded_vgg16()


@pytest.fixture(scope="module")
def tv16(bundled):
    """The bundled VGG-16 as a torchvision state dict (OIHW), with small classifier stand-ins."""
    return F.torchvision_state(bundled.params, CONVS["vgg16"], TV_VGG16)


@pytest.fixture(scope="module")
def random19():
    """Random VGG-19-shaped canonical params (a non-symmetric kernel catches transposition bugs)."""
    rng = np.random.default_rng(19)
    return {name: {"kernel": rng.standard_normal(k, dtype=np.float32), "bias": rng.standard_normal(b, dtype=np.float32)}
            for name, (k, b) in vgg.conv_shapes("vgg19").items()}


@pytest.fixture(scope="module")
def real_files(tmp_path_factory, tv16, random19):
    """Real-shaped checkpoints: VGG-16 as torch zip / safetensors, VGG-19 as a legacy torch stream."""
    d = tmp_path_factory.mktemp("real")
    return {
        "vgg16-zip": F.save_torch(d / "vgg16.pth", tv16),
        "vgg16-safetensors": F.save_safetensors(d / "vgg16.safetensors", tv16, metadata={"format": "pt"}),
        "vgg19-legacy": F.save_torch(d / "vgg19.pth", F.torchvision_state(random19, CONVS["vgg19"], TV_VGG19),
                                     legacy=True),
    }


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache of our own; resolve_weights' lru_cache is cleared around the test."""
    root = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(root))
    monkeypatch.delenv(W.URL_ENV, raising=False)
    W.resolve_weights.cache_clear()
    yield root
    W.resolve_weights.cache_clear()


def cache_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def assert_same_params(a, b):
    assert set(a) == set(b)
    for name in a:
        for leaf in ("kernel", "bias"):
            x, y = np.asarray(a[name][leaf]), np.asarray(b[name][leaf])
            assert x.dtype == np.float32 and x.shape == y.shape, (name, leaf)
            assert np.array_equal(x, y), (name, leaf)


# --- conversion of real-shaped files ------------------------------------------------------

def test_conv_indices_are_torchvisions():
    assert W.torchvision_conv_indices("vgg16") == TV_VGG16
    assert W.torchvision_conv_indices("vgg19") == TV_VGG19


@pytest.mark.parametrize("kind", ["vgg16-zip", "vgg16-safetensors"])
def test_vgg16_round_trip_is_exact(real_files, bundled, kind):
    w = W.load_weights_file(real_files[kind])
    assert (w.arch, w.convention) == ("vgg16", "torchvision")
    assert_same_params(w.params, bundled.params)


def test_vgg19_legacy_stream_is_exact_and_infers_arch(real_files, random19):
    w = W.load_weights_file(real_files["vgg19-legacy"])
    assert (w.arch, w.convention) == ("vgg19", "torchvision")
    assert_same_params(w.params, random19)


def test_oihw_kernel_means_what_torch_means(real_files, random19):
    """conv1_1 from the file equals torch's cross-correlation written out in numpy:
    out[o, y, x] = b[o] + sum_{i,ky,kx} w[o, i, ky, kx] * pad(in)[i, y + ky, x + kx]."""
    w = W.load_weights_file(real_files["vgg19-legacy"])
    image = np.random.default_rng(0).random((7, 9, 3)).astype(np.float32)
    x = (image - np.array(vgg.IMAGENET_MEAN_RGB)) / np.array(vgg.IMAGENET_STD_RGB)
    x = np.pad(x.transpose(2, 0, 1), ((0, 0), (1, 1), (1, 1)))  # [3, 9, 11]
    oihw = F.torchvision_state(random19, CONVS["vgg19"], TV_VGG19)["features.0.weight"]
    bias = random19["conv1_1"]["bias"]
    ref = np.zeros((64, 7, 9))
    for ky in range(3):
        for kx in range(3):
            ref += np.einsum("oi,iyx->oyx", oihw[:, :, ky, kx], x[:, ky:ky + 7, kx:kx + 9])
    ref = (ref + bias[:, None, None]).transpose(1, 2, 0)
    ours = np.asarray(vgg.features(w, jnp.asarray(image), ["conv1_1"])["conv1_1"])
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)


def test_torch_reader_skips_what_keep_rejects(real_files):
    kept = C.read_torch_checkpoint(real_files["vgg16-zip"], keep=lambda k: k.startswith("classifier."))
    assert sorted(kept) == ["classifier.6.bias", "classifier.6.weight"]
    assert np.array_equal(kept["classifier.6.weight"], np.ones((10, 4), np.float32))


# --- parsers on small files ---------------------------------------------------------------

def small_state():
    rng = np.random.default_rng(1)
    return {"a.weight": rng.standard_normal((2, 3, 4), dtype=np.float32),
            "b": np.arange(5, dtype=np.float64), "c": np.linspace(-2, 2, 6).astype(np.float16).reshape(3, 2),
            "n": np.array([7, -3], np.int64)}


@pytest.mark.parametrize("legacy", [False, True])
def test_torch_reader_small_state_both_formats(tmp_path, legacy):
    state = small_state()
    got = C.read_torch_checkpoint(F.save_torch(tmp_path / "s.pth", state, legacy=legacy))
    assert sorted(got) == sorted(state)
    for key, value in state.items():
        assert got[key].dtype == value.dtype and np.array_equal(got[key], value), key


@pytest.mark.parametrize("legacy", [False, True])
def test_torch_reader_views_offsets_shared_storage_size_and_bfloat16(tmp_path, legacy):
    base = np.arange(12, dtype=np.float32)
    shared = F.Storage("s0", base)
    bits = F.bfloat16_bits(np.array([1.0, -2.5, 3.0], np.float32))
    bf = F.Storage("s1", bits, type_name="BFloat16Storage")
    obj = {"t": F.Tensor(shared, F.Size((3, 2)), stride=(1, 3)),  # a transposed view, size as torch.Size
           "o": F.Tensor(shared, (2, 2), stride=(2, 1), offset=7),
           "bf": F.Tensor(bf, (3,))}
    writer = F.write_torch_legacy if legacy else F.write_torch_zip
    got = C.read_torch_checkpoint(writer(tmp_path / "v.pth", obj, [shared, bf]))
    assert np.array_equal(got["t"], base[:6].reshape(2, 3).T)
    assert np.array_equal(got["o"], base[7:11].reshape(2, 2))
    assert got["bf"].dtype == np.float32 and np.array_equal(got["bf"], [1.0, -2.5, 3.0])


def test_torch_reader_nested_state_dict_module_prefix_and_archive_name(tmp_path):
    state = {"module.features.0.weight": np.ones((2, 2), np.float32)}
    obj, storages = F.tensors_of(state)
    path = F.write_torch_zip(tmp_path / "n.pth", {"epoch": 3, "state_dict": obj}, storages,
                             prefix="vgg19-dcbb9e9d")
    got = C.read_torch_checkpoint(path)
    assert list(got) == ["features.0.weight"] and np.array_equal(got["features.0.weight"], np.ones((2, 2)))


@pytest.mark.parametrize("bf16", [False, True])
def test_safetensors_reader(tmp_path, bf16):
    state = {k: v for k, v in small_state().items() if v.dtype != np.int64}
    got = C.read_safetensors(F.save_safetensors(tmp_path / "s.safetensors", state, bf16=bf16))
    assert sorted(got) == sorted(state)
    for key, value in state.items():
        if bf16:  # truncation to bfloat16 keeps 8 significant bits
            assert got[key].dtype == np.float32
            np.testing.assert_allclose(got[key], value, rtol=2 ** -7)
        else:
            assert got[key].dtype == value.dtype and np.array_equal(got[key], value)


# --- refusals: truncated, corrupt, wrong shape, wrong keys, checksum, malicious --------------

def truncated_copy(path: Path, tmp_path: Path, keep: int) -> Path:
    out = tmp_path / f"cut-{path.name}"
    out.write_bytes(path.read_bytes()[:keep])
    return out


def test_truncated_files_are_refused(tmp_path):
    state = small_state()
    zip_path = F.save_torch(tmp_path / "z.pth", state)
    legacy = F.save_torch(tmp_path / "l.pth", state, legacy=True)
    st = F.save_safetensors(tmp_path / "s.safetensors", {"x": np.ones(100, np.float32)})
    size = legacy.stat().st_size
    with pytest.raises(WeightsError, match="truncated or corrupt"):
        W.load_weights_file(truncated_copy(zip_path, tmp_path, zip_path.stat().st_size // 2))
    with pytest.raises(WeightsError, match=r"is truncated: storage \S+ needs \d+ bytes"):
        C.read_torch_checkpoint(truncated_copy(legacy, tmp_path, size - 3))
    with pytest.raises(WeightsError, match="truncated or not a weights pickle"):
        C.read_torch_checkpoint(truncated_copy(legacy, tmp_path, 60))  # inside the pickles
    with pytest.raises(WeightsError, match=r"is truncated: x ends at byte 400"):
        C.read_safetensors(truncated_copy(st, tmp_path, st.stat().st_size - 10))
    with pytest.raises(WeightsError, match="header claims"):
        C.read_safetensors(truncated_copy(st, tmp_path, 20))


def test_corrupt_torch_files_are_refused(tmp_path):
    storage = F.Storage("0", np.arange(4, dtype=np.float32))
    cases = {
        "reaches element 9": ({"t": F.Tensor(storage, (2, 2), stride=(4, 2), offset=3)}, [storage]),
        "is missing": ({"t": F.Tensor(storage, (4,))}, []),
        "malformed tensor": ({"t": F.Tensor(storage, (4,), stride=(-1,))}, [storage]),
    }
    for message, (obj, storages) in cases.items():
        with pytest.raises(WeightsError, match=message):
            C.read_torch_checkpoint(F.write_torch_zip(tmp_path / "c.pth", obj, storages))
    short = F.Storage("0", np.arange(3, dtype=np.float32))
    obj = {"t": F.Tensor(storage, (4,))}
    with pytest.raises(WeightsError, match="holds 12 bytes but the pickle needs 16"):
        C.read_torch_checkpoint(F.write_torch_zip(tmp_path / "c.pth", obj, [short]))
    with pytest.raises(WeightsError, match="holds 3 elements but the pickle says 4"):
        C.read_torch_checkpoint(F.write_torch_legacy(tmp_path / "c.pth", obj, [short]))


def test_unrecognised_formats_say_what_they_are(tmp_path):
    cases = {"h5": (b"\x89HDF\r\n\x1a\n" + bytes(600), "HDF5"),
             "tar": (bytes(257) + b"ustar" + bytes(300), "tar archive"),
             "txt": (b"hello world, not weights", "unrecognised weights format"),
             "pkl": (pickle.dumps({"a": 1}, protocol=2), "no torch magic number")}
    for suffix, (data, message) in cases.items():
        path = tmp_path / f"f.{suffix}"
        path.write_bytes(data)
        with pytest.raises(WeightsError, match=message):
            W.load_weights_file(path)
    script = tmp_path / "script.pt"
    with zipfile.ZipFile(script, "w") as zf:
        zf.writestr("m/constants.pkl", b"")
        zf.writestr("m/code/m.py", b"")
    with pytest.raises(WeightsError, match="TorchScript"):
        W.load_weights_file(script)
    with pytest.raises(WeightsError, match="does not exist"):
        W.load_weights_file(tmp_path / "absent.pth")
    with pytest.raises(WeightsError, match="is a directory"):
        W.load_weights_file(tmp_path)


def test_malformed_safetensors_headers(tmp_path):
    def write(header: bytes, data: bytes = b"") -> Path:
        path = tmp_path / "m.safetensors"
        path.write_bytes(struct.pack("<Q", len(header)) + header + data)
        return path

    with pytest.raises(WeightsError, match="not valid JSON"):
        C.read_safetensors(write(b"{not json"))
    with pytest.raises(WeightsError, match="malformed header entry for x.*supported dtypes"):
        C.read_safetensors(write(b'{"x": {"dtype": "F8_E4M3", "shape": [1], "data_offsets": [0, 1]}}', b"\0"))
    with pytest.raises(WeightsError, match=r"spans 8 bytes but a F32 tensor of shape \(3,\) needs 12"):
        C.read_safetensors(write(b'{"x": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}', bytes(12)))


def zeros_state(arch: str) -> dict:
    """A torchvision-layout state dict of zeros (calloc'd: cheap at full VGG size)."""
    params = {n: {"kernel": np.zeros(k, np.float32), "bias": np.zeros(b, np.float32)}
              for n, (k, b) in vgg.conv_shapes(arch).items()}
    return F.torchvision_state(params, CONVS[arch], TV_VGG16 if arch == "vgg16" else TV_VGG19)


def test_wrong_shapes_keys_counts_and_values_are_refused():
    good = zeros_state("vgg16")
    params, arch = W.torchvision_params(good)
    assert arch == "vgg16" and params["conv1_1"]["kernel"].shape == (3, 3, 3, 64)

    bad = dict(good, **{"features.2.weight": np.zeros((64, 64, 3, 2), np.float32)})
    with pytest.raises(WeightsError, match=r"features.2.weight \(conv1_2\) has shape \(64, 64, 3, 2\), "
                                           r"expected \(64, 64, 3, 3\)"):
        W.torchvision_params(bad)
    bad = dict(good, **{"features.0.bias": np.zeros(63, np.float32)})
    with pytest.raises(WeightsError, match=r"features.0.bias \(conv1_1\) has shape \(63,\)"):
        W.torchvision_params(bad)
    missing = {k: v for k, v in good.items() if k != "features.28.bias"}
    with pytest.raises(WeightsError, match=r"missing \['features.28.bias'\], unexpected none"):
        W.torchvision_params(missing)
    bn = dict(good, **{"features.1.running_mean": np.zeros(64, np.float32)})
    with pytest.raises(WeightsError, match="batch-norm VGG"):
        W.torchvision_params(bn)
    fewer = {k: v for k, v in good.items() if not k.startswith("features.28.")}
    with pytest.raises(WeightsError, match="has 12 convolutions in features.*VGG-16 has 13 and VGG-19 has 16"):
        W.torchvision_params(fewer)
    with pytest.raises(WeightsError, match="it is a vgg16 checkpoint, not vgg19; pass --arch vgg16"):
        W.torchvision_params(good, arch="vgg19")
    with pytest.raises(WeightsError, match="no features.N.weight tensors.*classifier.6.bias"):
        W.torchvision_params({k: v for k, v in good.items() if k.startswith("classifier")})
    nan = dict(good, **{"features.5.bias": np.full(128, np.nan, np.float32)})
    with pytest.raises(WeightsError, match="features.5.bias contains NaN"):
        W.torchvision_params(nan)
    ints = dict(good, **{"features.5.bias": np.zeros(128, np.int64)})
    with pytest.raises(WeightsError, match="dtype int64, expected floating point"):
        W.torchvision_params(ints)
    assert W.torchvision_params(zeros_state("vgg19"))[1] == "vgg19"


def test_wrong_key_set_through_a_file(tmp_path):
    path = F.save_torch(tmp_path / "one.pth", {"features.0.weight": np.zeros((64, 3, 3, 3), np.float32),
                                               "features.0.bias": np.zeros(64, np.float32)})
    with pytest.raises(WeightsError, match="has 1 convolutions"):
        W.load_weights_file(path)
    with pytest.raises(WeightsError, match=r"wrong key set for vgg16 .*missing \['features.2.bias'"):
        W.load_weights_file(path, arch="vgg16")


def test_checksums(tmp_path, real_files):
    path = F.save_torch(tmp_path / "s.pth", small_state())
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(WeightsError, match=f"checksum mismatch.*expected sha256 {'0' * 64}, got {digest}"):
        W.load_weights_file(path, sha256="0" * 64)
    with pytest.raises(WeightsError, match="a sha256 has 64 hex digits"):
        W.load_weights_file(path, sha256="abc")
    # A file named like torchvision's must match the sha256 prefix in its name.
    fake = tmp_path / "vgg19-dcbb9e9d.pth"
    shutil.copy(real_files["vgg19-legacy"], fake)
    with pytest.raises(WeightsError, match="should start with dcbb9e9d"):
        W.load_weights_file(fake)
    good = real_files["vgg16-zip"]
    assert W.load_weights_file(good, sha256=W.sha256_file(good).upper()).arch == "vgg16"


class Evil:
    """Unpickling this would run a shell command."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class EvalEvil:
    def __reduce__(self):
        return eval, ("__import__('os').getcwd()",)


@pytest.mark.parametrize("protocol", [2, 4])
def test_malicious_pickles_are_refused_everywhere(tmp_path, protocol):
    marker = tmp_path / "pwned"
    system = pickle.dumps({"features.0.weight": Evil(marker)}, protocol=protocol)
    evaluate = pickle.dumps(EvalEvil(), protocol=protocol)
    system_name = f"{os.system.__module__}.system"  # posix.system
    with pytest.raises(WeightsError, match=f"refusing to load {system_name}.*only tensors, storages"):
        W.load_weights_file(F.write_torch_zip(tmp_path / "z.pth", None, [], pickle_bytes=system))
    evaluate_name = "(__builtin__|builtins).eval"  # protocol 2 writes Python 2's module name
    with pytest.raises(WeightsError, match=f"refusing to load {evaluate_name}"):
        W.load_weights_file(F.write_torch_legacy(tmp_path / "l.pth", None, [], pickle_bytes=evaluate))
    with pytest.raises(WeightsError, match=f"refusing to load {system_name}"):
        C.safe_unpickle(system)
    with pytest.raises(WeightsError, match=f"refusing to load {evaluate_name}.*only numpy arrays"):
        C.safe_unpickle(evaluate)
    assert not marker.exists()


def test_torch_pickle_cannot_smuggle_objects_through_allowed_names(tmp_path):
    # _rebuild_tensor_v2 called on a string instead of a storage.
    fake = pickle.GLOBAL + b"torch._utils\n_rebuild_tensor_v2\n" + pickle.MARK + pickle.BINUNICODE \
        + struct.pack("<I", 3) + b"abc" + pickle.BININT1 + b"\0" + pickle.EMPTY_TUPLE + pickle.EMPTY_TUPLE \
        + pickle.TUPLE + pickle.REDUCE + pickle.STOP
    with pytest.raises(WeightsError, match="not a storage"):
        C.read_torch_checkpoint(F.write_torch_zip(tmp_path / "a.pth", None, [], pickle_bytes=b"\x80\x02" + fake))
    # A persistent id that is not a storage reference.
    pid = pickle.PROTO + b"\x02" + pickle.BINUNICODE + struct.pack("<I", 4) + b"evil" + pickle.BINPERSID + pickle.STOP
    with pytest.raises(WeightsError, match="unexpected persistent id 'evil'"):
        C.read_torch_checkpoint(F.write_torch_zip(tmp_path / "b.pth", None, [], pickle_bytes=pid))
    # A dict that holds itself under 'state_dict' (no tensors anywhere).
    loop = pickle.PROTO + b"\x02" + pickle.EMPTY_DICT + pickle.BINPUT + b"\0" + pickle.BINUNICODE \
        + struct.pack("<I", 10) + b"state_dict" + pickle.BINGET + b"\0" + pickle.SETITEM + pickle.STOP
    assert (d := pickle.loads(loop))["state_dict"] is d
    with pytest.raises(WeightsError, match="holds no state dict"):
        C.read_torch_checkpoint(F.write_torch_zip(tmp_path / "d.pth", None, [], pickle_bytes=loop))
    # numpy's own reconstruction is not admitted in torch files.
    arr = pickle.dumps({"x": np.zeros(2)}, protocol=2)
    with pytest.raises(WeightsError, match="refusing to load numpy"):
        C.read_torch_checkpoint(F.write_torch_zip(tmp_path / "c.pth", None, [], pickle_bytes=arr))


def test_npz_with_pickled_object_arrays_is_refused(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, evil=np.array([Evil(tmp_path / "x")], dtype=object))
    with pytest.raises(WeightsError, match="cannot read .* as .npz.*allow_pickle"):
        W.load_npz(path)
    assert not (tmp_path / "x").exists()


# --- the bundled checkpoint's own checks ----------------------------------------------------

@pytest.fixture
def lpips_copy(tmp_path, monkeypatch):
    """Point the bundled-weights loader at a copy we may damage; restore its cache after."""
    copy = tmp_path / "vgg16.ckpt"
    shutil.copy(W.lpips_checkpoint_path(), copy)
    monkeypatch.setattr(W, "lpips_checkpoint_path", lambda: copy)
    W._lpips_tree.cache_clear()
    yield copy
    W._lpips_tree.cache_clear()


def test_bundled_checkpoint_checksum_mismatch(lpips_copy):
    data = bytearray(lpips_copy.read_bytes())
    data[len(data) // 2] ^= 1
    lpips_copy.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=f"checksum mismatch for {lpips_copy}: expected sha256 "
                                           f"{W.LPIPS_VGG16_SHA256}"):
        W.embedded_vgg16()


def test_bundled_checkpoint_truncated_pickle_is_refused(lpips_copy):
    data = lpips_copy.read_bytes()
    with pytest.raises(WeightsError, match="truncated or not a weights pickle"):
        C.safe_unpickle(data[: len(data) // 3], what="cut copy")
    lpips_copy.write_bytes(data[: len(data) // 3])
    with pytest.raises(WeightsError, match="checksum mismatch"):
        W.embedded_vgg16()


# --- import, cache, resolver ----------------------------------------------------------------

def test_import_writes_the_cache_atomically(cache, real_files, random19):
    out = W.import_weights(real_files["vgg19-legacy"], convention="caffe")
    assert out == W.cached_weights_path("vgg19") and cache_files(cache) == ["weights/vgg19.npz"]
    assert W.npz_metadata(out) == ("vgg19", "caffe")
    w = W.resolve_weights("vgg19")
    assert (w.arch, w.convention) == ("vgg19", "caffe")
    assert_same_params(w.params, random19)
    # An .npz imports too, and --arch must agree with it.
    again = W.load_weights_file(out, convention="torchvision")
    assert again.convention == "torchvision"
    with pytest.raises(WeightsError, match="holds vgg19 weights, not vgg16"):
        W.import_weights(out, arch="vgg16")
    with pytest.raises(WeightsError, match="unknown convention 'cafe' \\(did you mean 'caffe'"):
        W.import_weights(out, convention="cafe")


def test_failed_import_leaves_cache_empty(cache, tmp_path):
    bad = F.save_torch(tmp_path / "bad.pth", {"features.0.weight": np.zeros((1,), np.float32)})
    with pytest.raises(WeightsError):
        W.import_weights(bad)
    assert cache_files(cache) == []


def test_resolver_warns_when_falling_back(cache):
    with pytest.raises(WeightsError, match="jaxstyle weights fetch vgg19"):
        W.resolve_weights("vgg19")
    with pytest.warns(W.WeightsFallbackWarning, match="no vgg19 weights found .*jaxstyle weights fetch vgg19"
                                                      ".*Falling back to the bundled vgg16"):
        w = W.resolve_weights("vgg19", allow_fallback=True)
    assert w.arch == "vgg16"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert W.resolve_weights("vgg16").source.startswith("bundled")


def test_resolver_reads_weight_files_by_path(cache, real_files, bundled):
    assert_same_params(W.resolve_weights(str(real_files["vgg16-safetensors"])).params, bundled.params)
    with pytest.raises(WeightsError, match="does not exist"):
        W.resolve_weights(str(cache / "nope.pth"))
    with pytest.raises(WeightsError, match="unknown backbone 'vgg91' \\(did you mean"):
        W.resolve_weights("vgg91")


def test_list_weights(cache, real_files):
    rows = W.list_weights()
    assert [r["source"] for r in rows] == ["bundled"] and rows[0]["size_bytes"] > 50e6
    W.import_weights(real_files["vgg16-zip"])
    (cache / "weights" / "vgg19.npz").write_bytes(b"garbage")
    rows = {(r["source"], r["arch"]): r for r in W.list_weights()}
    assert rows[("cache", "vgg16")]["convention"] == "torchvision"
    assert rows[("cache", "vgg16")]["size_bytes"] == W.cached_weights_path("vgg16").stat().st_size
    assert "delete it" in rows[("cache", "vgg19")]["error"]


# --- downloads --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(real_files):
    """A local HTTP server; tests add files to its dict."""
    files = {}
    with F.serve(files) as base:
        yield base, files


def prefixed_name(data: bytes, stem: str = "vgg16") -> str:
    return f"{stem}-{hashlib.sha256(data).hexdigest()[:8]}.pth"


def test_fetch_success_round_trip(cache, server, real_files, bundled, capsys):
    base, files = server
    data = real_files["vgg16-zip"].read_bytes()
    name = prefixed_name(data)
    files[f"/models/{name}"] = (data, "ok")
    out = W.fetch_weights("vgg16", url=f"{base}/models/{name}", sha256=hashlib.sha256(data).hexdigest())
    assert out == W.cached_weights_path("vgg16") and cache_files(cache) == ["weights/vgg16.npz"]
    assert_same_params(W.load_npz(out).params, bundled.params)
    assert "downloading vgg16: 100%" in capsys.readouterr().err


def fetch_fails(match: str, cache: Path, **kwargs) -> None:
    with pytest.raises(WeightsError, match=match):
        W.fetch_weights("vgg16", progress=False, **kwargs)
    assert cache_files(cache) == [], "a failed download left files in the cache"


def test_fetch_failures_leave_the_cache_clean(cache, server, monkeypatch, tmp_path):
    base, files = server
    small = F.save_torch(tmp_path / "s.pth", small_state()).read_bytes()
    files["/mirror/vgg16-397923af.pth"] = (small, "ok")  # the registry's name, other bytes
    files[f"/cut/{prefixed_name(small)}"] = (small, "cut")
    files[f"/ok/{prefixed_name(small)}"] = (small, "ok")
    digest = hashlib.sha256(small).hexdigest()

    monkeypatch.setenv(W.URL_ENV, f"{base}/mirror/")
    fetch_fails(f"checksum mismatch for vgg16-397923af.pth: its sha256 should start with 397923af, got {digest}",
                cache)
    monkeypatch.delenv(W.URL_ENV)
    fetch_fails(f"expected sha256 {'1' * 64}, got {digest}", cache, url=f"{base}/ok/{prefixed_name(small)}",
                sha256="1" * 64)
    fetch_fails(rf"was cut off after {len(small) // 2} of {len(small)} bytes; run the command again", cache,
                url=f"{base}/cut/{prefixed_name(small)}")
    fetch_fails("HTTP 404 Not Found; check the URL", cache, url=f"{base}/models/vgg16-deadbeef.pth")
    fetch_fails("has no features.N.weight tensors", cache, url=f"{base}/ok/{prefixed_name(small)}")
    fetch_fails("only http\\(s\\) URLs", cache, url="file:///etc/passwd")
    with pytest.raises(WeightsError, match="unknown weights 'vgg91' \\(did you mean"):
        W.fetch_weights("vgg91")


def test_fetch_unreachable_host(cache):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    fetch_fails("cannot reach .*import PATH", cache, url=f"http://127.0.0.1:{port}/vgg16-397923af.pth")


# --- size caps, identity, replacing cached weights ------------------------------------------

def deflated_copy(stored: Path, out: Path) -> Path:
    """The same torch zip with every record deflate-compressed (as a zip bomb would be)."""
    with zipfile.ZipFile(stored) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for name in src.namelist():
            dst.writestr(name, src.read(name))
    return out


def test_the_size_caps_admit_every_vgg():
    fc6 = 25088 * 4096 * 4  # the largest tensor of VGG-16/19
    assert C.MAX_TENSOR_BYTES >= fc6 and C.MAX_TOTAL_BYTES >= 548 << 20  # all of VGG-19


def test_a_record_that_unpacks_past_the_cap_is_refused_before_it_is_read(tmp_path, monkeypatch):
    """A deflated 4 MiB record of zeros (4 kB in the file) stands for one of many GB: the cap
    is lowered to 1 MiB so the test stays small."""
    monkeypatch.setattr(C, "MAX_TENSOR_BYTES", 1 << 20, raising=False)
    stored = F.save_torch(tmp_path / "s.pth", {"features.0.weight": np.zeros(1 << 20, np.float32)})
    bomb = deflated_copy(stored, tmp_path / "bomb.pth")
    assert bomb.stat().st_size < 64 << 10
    reads = []
    real_read = zipfile.ZipFile.read
    monkeypatch.setattr(zipfile.ZipFile, "read", lambda self, name, *a: reads.append(name) or real_read(self, name, *a))
    with pytest.raises(WeightsError, match="needs 4 MiB .*more than a VGG's weights.*not a VGG checkpoint"):
        C.read_torch_checkpoint(bomb)
    assert not any("/data/" in name for name in reads)  # never decompressed


def test_the_caps_hold_for_every_format(tmp_path, monkeypatch):
    monkeypatch.setattr(C, "MAX_TENSOR_BYTES", 1 << 20, raising=False)
    monkeypatch.setattr(C, "MAX_TOTAL_BYTES", 1 << 20, raising=False)
    big = {"features.0.weight": np.zeros(1 << 19, np.float32)}  # 2 MiB
    for path, read in ((F.save_torch(tmp_path / "l.pth", big, legacy=True), C.read_torch_checkpoint),
                       (F.save_safetensors(tmp_path / "b.safetensors", big), C.read_safetensors)):
        with pytest.raises(WeightsError, match="not a VGG checkpoint"):
            read(path)
    # A tiny storage viewed with stride 0 as a huge tensor (its copy would be the bomb).
    storage = F.Storage("0", np.zeros(1, np.float32))
    obj = {"features.0.weight": F.Tensor(storage, (1024, 1024), stride=(0, 0))}
    with pytest.raises(WeightsError, match=r"size \(1024, 1024\) would take more than 1 MiB"):
        C.read_torch_checkpoint(F.write_torch_zip(tmp_path / "view.pth", obj, [storage]))
    # A compressed .npz (np.savez_compressed) that unpacks past the cap.
    np.savez_compressed(tmp_path / "w.npz", conv1_1=np.zeros(1 << 19, np.float32))
    with pytest.raises(WeightsError, match="2 MiB of arrays when unpacked"):
        W.load_npz(tmp_path / "w.npz")


def test_loaded_weights_say_which_file_made_them(cache, real_files, bundled):
    assert W.weights_identity(bundled) == {
        "arch": "vgg16", "convention": "torchvision", "source": "bundled",
        "path": str(W.lpips_checkpoint_path()), "sha256": W.LPIPS_VGG16_SHA256}
    by_path = W.resolve_weights(str(real_files["vgg16-safetensors"]))
    assert W.weights_identity(by_path)["source"] == "file"
    assert W.weights_identity(by_path)["sha256"] == W.sha256_file(real_files["vgg16-safetensors"])
    out = W.import_weights(real_files["vgg16-zip"], convention="caffe")
    cached = W.resolve_weights("vgg16")
    assert W.weights_identity(cached) == {"arch": "vgg16", "convention": "caffe", "source": "cache",
                                          "path": str(out), "sha256": W.sha256_file(out)}
    assert W.describe_backbone("vgg16") == W.weights_identity(cached)
    assert W.weights_identity(vgg.VGGWeights(params={}, source="made in memory"))["source"] == "made in memory"


def test_import_and_fetch_never_replace_cached_weights_without_force(cache, real_files, server):
    out = W.import_weights(real_files["vgg16-zip"], convention="caffe")
    before = out.read_bytes()
    with pytest.raises(WeightsError, match="already holds vgg16 weights, which backbone 'vgg16' uses; pass --force"):
        W.import_weights(real_files["vgg16-safetensors"])
    base, files = server
    data = real_files["vgg16-zip"].read_bytes()
    files[f"/f/{prefixed_name(data)}"] = (data, "ok")
    with pytest.raises(WeightsError, match="pass --force"):
        W.fetch_weights("vgg16", url=f"{base}/f/{prefixed_name(data)}", progress=False)
    assert out.read_bytes() == before and cache_files(cache) == ["weights/vgg16.npz"]
    W.import_weights(real_files["vgg16-safetensors"], force=True)
    assert W.npz_metadata(out) == ("vgg16", "torchvision")
    W.fetch_weights("vgg16", url=f"{base}/f/{prefixed_name(data)}", progress=False, force=True)
    assert cache_files(cache) == ["weights/vgg16.npz"]
