"""Test helpers: torch.save (zip, legacy) and .safetensors writers without torch; a local HTTP server.

They write the byte layouts that torch and safetensors write, so the readers in
`jaxstyle.checkpoints` can be tested on files whose every byte the test controls:

- zip (torch >= 1.6): `archive/data.pkl` (pickle protocol 2 whose tensors are
  `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())`
  with storages as persistent ids `('storage', torch.FloatStorage, key, 'cpu', numel)`),
  `archive/byteorder`, `archive/data/<key>` raw little-endian bytes, `archive/version`.
- legacy (torch < 1.6, torchvision's VGG files): pickles of the magic number, the
  protocol version 1001 and sys_info, then the state-dict pickle (persistent ids carry
  a sixth item, view_metadata=None; tensors use `_rebuild_tensor(storage, offset, size,
  stride)`), the sorted list of storage keys, then per storage an int64 element count
  and the raw bytes.
- safetensors: u64 little-endian header length, JSON header, data buffer.
"""

from __future__ import annotations

import collections
import contextlib
import http.server
import io
import json
import pickle
import struct
import threading
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

MAGIC = 0x1950A86A20F9469CFC6C
STORAGE_NAMES = {np.dtype(np.float32): "FloatStorage", np.dtype(np.float16): "HalfStorage",
                 np.dtype(np.float64): "DoubleStorage", np.dtype(np.int64): "LongStorage"}


class Global:
    """A global written by module and name, without importing it (torch is not installed)."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle's save_reduce insists on a callable
        raise TypeError("a stand-in, never called")


class Storage:
    def __init__(self, key: str, array: np.ndarray, type_name: str | None = None):
        self.key, self.array = key, np.ascontiguousarray(array).reshape(-1)
        self.type_name = type_name or STORAGE_NAMES[self.array.dtype]


class Size(tuple):
    """Pickled as torch.Size((...)), as some checkpoints store tensor sizes."""


class Tensor:
    def __init__(self, storage: Storage, shape: tuple, stride: tuple | None = None, offset: int = 0):
        if stride is None:
            stride = tuple(int(np.prod(shape[i + 1:])) for i in range(len(shape)))
        shape = shape if isinstance(shape, Size) else tuple(shape)
        self.storage, self.shape, self.stride, self.offset = storage, shape, tuple(stride), offset


class TorchPickler(pickle._Pickler):
    """A pure-Python pickler that writes `Global`s, storages and tensors the way torch does."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_fake_global(self, obj: Global) -> None:
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())

    dispatch[Global] = save_fake_global

    def __init__(self, file, *, legacy: bool):
        super().__init__(file, protocol=2)
        self.legacy = legacy

    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            pid = ("storage", Global("torch", obj.type_name), obj.key, "cpu", obj.array.size)
            return pid + (None,) if self.legacy else pid
        return None

    def reducer_override(self, obj):
        if isinstance(obj, Size):
            return Global("torch", "Size"), (tuple(obj),)
        if isinstance(obj, Tensor):
            if self.legacy:
                return Global("torch._utils", "_rebuild_tensor"), (obj.storage, obj.offset, obj.shape, obj.stride)
            return (Global("torch._utils", "_rebuild_tensor_v2"),
                    (obj.storage, obj.offset, obj.shape, obj.stride, False, collections.OrderedDict()))
        return NotImplemented


def tensors_of(state: Mapping[str, np.ndarray]) -> tuple[collections.OrderedDict, list[Storage]]:
    """One storage per array (as a state dict of separate parameters has)."""
    out, storages = collections.OrderedDict(), []
    for i, (key, array) in enumerate(state.items()):
        st = Storage(str(i), array)
        storages.append(st)
        out[key] = Tensor(st, array.shape)
    return out, storages


def dumps(obj, *, legacy: bool) -> bytes:
    buf = io.BytesIO()
    TorchPickler(buf, legacy=legacy).dump(obj)
    return buf.getvalue()


def write_torch_zip(path: Path, obj, storages: list[Storage], *, prefix: str = "archive",
                    pickle_bytes: bytes | None = None) -> Path:
    """`obj` is a state dict of `Tensor`s (or `pickle_bytes` replaces its pickle)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{prefix}/data.pkl", pickle_bytes if pickle_bytes is not None else dumps(obj, legacy=False))
        zf.writestr(f"{prefix}/byteorder", "little")
        for st in storages:
            zf.writestr(f"{prefix}/data/{st.key}", st.array.astype(st.array.dtype.newbyteorder("<")).tobytes())
        zf.writestr(f"{prefix}/version", "3\n")
    return path


def write_torch_legacy(path: Path, obj, storages: list[Storage], *, pickle_bytes: bytes | None = None) -> Path:
    sys_info = {"protocol_version": 1001, "little_endian": True,
                "type_sizes": {"short": 2, "int": 4, "long": 8}}
    with open(path, "wb") as f:
        for header in (MAGIC, 1001, sys_info):
            pickle.dump(header, f, protocol=2)
        f.write(pickle_bytes if pickle_bytes is not None else dumps(obj, legacy=True))
        keys = sorted(st.key for st in storages)
        pickle.dump(keys, f, protocol=2)
        by_key = {st.key: st for st in storages}
        for key in keys:
            array = by_key[key].array
            f.write(struct.pack("<q", array.size))
            f.write(array.astype(array.dtype.newbyteorder("<")).tobytes())
    return path


def save_torch(path: Path, state: Mapping[str, np.ndarray], *, legacy: bool = False) -> Path:
    """Write a state dict of arrays as torch.save would (zip, or legacy stream)."""
    obj, storages = tensors_of(state)
    return (write_torch_legacy if legacy else write_torch_zip)(path, obj, storages)


SAFETENSORS_DTYPES = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(np.float64): "F64"}


def bfloat16_bits(array: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (truncation), as uint16."""
    return (np.ascontiguousarray(array, np.float32).view(np.uint32) >> 16).astype(np.uint16)


def save_safetensors(path: Path, state: Mapping[str, np.ndarray], *, bf16: bool = False,
                     metadata: dict | None = None) -> Path:
    header, chunks, offset = {}, [], 0
    for key, array in state.items():
        if bf16:
            data, dtype = bfloat16_bits(array).astype("<u2").tobytes(), "BF16"
        else:
            data, dtype = array.astype(array.dtype.newbyteorder("<")).tobytes(), SAFETENSORS_DTYPES[array.dtype]
        header[key] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    if metadata is not None:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)  # the format pads the header to 8 bytes
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for data in chunks:
            f.write(data)
    return path


def torchvision_state(params: Mapping[str, Mapping[str, np.ndarray]], names: list[str],
                      indices: tuple[int, ...], *, classifier: bool = True) -> dict[str, np.ndarray]:
    """A canonical tree written back as torchvision's `features.{i}.weight` (OIHW) / `.bias`.

    `names[j]` (e.g. 'conv1_1') goes to `features.{indices[j]}`.
    """
    assert len(names) == len(indices)
    state = {}
    for name, i in zip(names, indices):
        layer = params[name]
        state[f"features.{i}.weight"] = np.ascontiguousarray(np.transpose(np.asarray(layer["kernel"]), (3, 2, 0, 1)))
        state[f"features.{i}.bias"] = np.asarray(layer["bias"])
    if classifier:  # small stand-ins: the readers must ignore these keys
        state["classifier.6.weight"] = np.ones((10, 4), np.float32)
        state["classifier.6.bias"] = np.zeros((10,), np.float32)
    return state



# --- a local HTTP server for download tests ------------------------------------------------

class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves `server.files[path] = (body, mode)`; mode 'ok', or 'cut' (Content-Length says
    more than is sent, then the connection closes). Unknown paths get 404."""

    def do_GET(self):
        entry = self.server.files.get(self.path)
        if entry is None:
            self.send_error(404, "Not Found")
            return
        body, mode = entry
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if mode == "cut" else body)
        self.close_connection = True

    def log_message(self, *args):  # keep test output quiet
        pass


@contextlib.contextmanager
def serve(files: dict):
    """A threaded HTTP server on 127.0.0.1 (ephemeral port); yields its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.files = files
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
