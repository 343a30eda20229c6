"""Deep Photo Style Transfer written plainly in PyTorch: a speed baseline for jaxstyle.

Not part of the package (torch is never a jaxstyle dependency). It computes the same
objective as `jaxstyle.objective` from the same bundled VGG-16 weights, the way the
PyTorch ports of DPST do it (a VGG module, Gram losses, a scipy-built matting Laplacian
applied as a torch sparse matmul, `torch.optim.LBFGS`), so that objective values can be
compared number for number and iteration times side by side.

Conventions: images are float32 numpy `[H, W, 3]` RGB in [0, 1]; masks are float32
`[H, W, K]` soft one-hot stacks (`jaxstyle.masks.parse_mask_pair(...).content/.style`),
or None for one region covering everything. Inside, tensors are NCHW on `device`.

The objective, term by term (all as in jaxstyle; see `jaxstyle/losses.py`):
- features in Caffe units: VGG activations x `losses.feature_unit("torchvision")`;
- content: mean((F - T)^2) at relu4_2;
- style per layer: sum_k m_k mean((G_k - T_k)^2), G_k = (M_k F)^T (M_k F) / (h w C m_k),
  with masks carried through the trunk by 3x3 averages (zero padding counted) and 2x2
  average pools (floor), style labels that vanish at a layer taking the whole style image;
- TV: 0.5 * sum over the [H-1, W-1] block of dx^2 + dy^2 of the image x 255;
- photo: sum_c v_c^T L v_c, L Levin's matting Laplacian (radius 1, eps 1e-7, windows inside
  the image), built in float64 with scipy and applied in float32 as a sparse CSR matmul.

Two stages like jaxstyle: stage 1 without the photo term from the content image, stage 2
with it from stage 1's result; each stage is one `LBFGS.step` of `iterations` iterations,
with torch's strong-Wolfe line search (default) or none (`line_search="none"`: a fixed step
lr=1, the first one scaled by min(1, 1/|g|_1), one evaluation per iteration, as the
original's Lua `optim.lbfgs` and jaxstyle's default `linesearch="none"`).

    python scripts/baselines/torch_dpst.py CONTENT STYLE --iterations 10 10 --size 128
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse
import torch
import torch.nn.functional as F
from numpy.lib.stride_tricks import sliding_window_view
from torch import nn

from jaxstyle import losses
from jaxstyle.errors import JaxstyleError, did_you_mean
from jaxstyle.vgg import CONTENT_LAYERS, IMAGENET_MEAN_RGB, IMAGENET_STD_RGB, STYLE_LAYERS, layer_specs

DEFAULT_WEIGHTS: dict[str, float] = {"content": 5.0, "style": 100.0, "tv": 1e-3, "photo": 1e4}
TERMS = tuple(DEFAULT_WEIGHTS)
LAPLACIAN_RADIUS = 1
LAPLACIAN_EPS = 1e-7
ARCH = "vgg16"
UNIT = losses.feature_unit("torchvision")  # 255 * mean(ImageNet std)
PIXEL_SCALE = losses.CAFFE_PIXEL_SCALE
STYLE_FALLBACK_PIXELS = 1.0  # as jaxstyle.masks.with_style_fallback's min_pixels
LINE_SEARCH_EVALS = 25  # torch's strong-Wolfe search allows at most 25 evaluations per iteration
LINE_SEARCHES = ("strong_wolfe", "none")  # "none": fixed step lr=1 (first step min(1, 1/|g|_1))


# ----------------------------------------------------------------------------- network


class VGG16(nn.Module):
    """VGG-16 trunk in plain torch: conv 3x3 (pad 1), ReLU, 2x2 max pool; Caffe-style names.

    `forward(x [N, 3, H, W] RGB in [0, 1], layers) -> {name: [N, C, h, w]}` normalises with
    the ImageNet mean/std and stops at the deepest requested layer.
    """

    def __init__(self, params: Mapping[str, Mapping[str, np.ndarray]]):
        super().__init__()
        self.specs = layer_specs(ARCH)
        self.convs = nn.ModuleDict()
        for spec in self.specs:
            if spec.kind != "conv":
                continue
            conv = nn.Conv2d(spec.in_channels, spec.out_channels, 3, padding=1)
            kernel = np.asarray(params[spec.name]["kernel"], np.float32)  # HWIO
            conv.weight.data = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))  # OIHW
            conv.bias.data = torch.from_numpy(np.asarray(params[spec.name]["bias"], np.float32).copy())
            self.convs[spec.name] = conv
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN_RGB).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD_RGB).view(1, 3, 1, 1))
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        wanted = set(layers)
        out: dict[str, torch.Tensor] = {}
        x = (x - self.mean) / self.std
        for spec in self.specs:
            if spec.kind == "conv":
                x = self.convs[spec.name](x)
            elif spec.kind == "relu":
                x = F.relu(x)
            else:
                x = F.max_pool2d(x, 2, 2)
            if spec.name in wanted:
                out[spec.name] = x
                wanted.discard(spec.name)
                if not wanted:
                    break
        return out


def load_vgg16(device: str | torch.device = "cpu") -> VGG16:
    """The bundled ImageNet VGG-16 (`jaxstyle.weights.embedded_vgg16`) as a torch module."""
    from jaxstyle.weights import embedded_vgg16

    return VGG16(embedded_vgg16().params).to(device).eval()


# ----------------------------------------------------------------------------- Laplacian


def matting_laplacian(content: np.ndarray, *, radius: int = LAPLACIAN_RADIUS,
                      eps: float = LAPLACIAN_EPS) -> scipy.sparse.csr_matrix:
    """Levin's matting Laplacian of `content [H, W, 3]`: float64 CSR `[H*W, H*W]`, row-major pixels.

    L_ij = sum_{k: i, j in w_k} (delta_ij - (1 + (I_i - mu_k)^T (Sigma_k + eps/|w| I)^{-1}
    (I_j - mu_k)) / |w|) over windows w_k lying entirely inside the image (closed-form
    matting's vectorised construction; duplicate COO entries sum).
    """
    img = np.asarray(content, np.float64)
    h, w, _ = img.shape
    diam = 2 * radius + 1
    size = diam * diam
    if h < diam or w < diam:
        raise JaxstyleError(f"image {h}x{w} is smaller than one {diam}x{diam} window")
    index = np.arange(h * w).reshape(h, w)
    windows = sliding_window_view(index, (diam, diam)).reshape(-1, size)  # [N, |w|]
    colours = img.reshape(h * w, 3)[windows]  # [N, |w|, 3]
    centred = colours - colours.mean(axis=1, keepdims=True)
    cov = np.einsum("npi,npj->nij", centred, centred) / size  # [N, 3, 3]
    inv = np.linalg.inv(cov + (eps / size) * np.eye(3))
    affinity = np.einsum("npi,nij,nqj->npq", centred, inv, centred)  # [N, |w|, |w|]
    values = np.eye(size) - (1.0 + affinity) / size
    rows = np.repeat(windows, size, axis=1).ravel()
    cols = np.tile(windows, (1, size)).ravel()
    return scipy.sparse.coo_matrix((values.ravel(), (rows, cols)), shape=(h * w, h * w)).tocsr()


def to_torch_csr(matrix: scipy.sparse.csr_matrix, device: str | torch.device) -> torch.Tensor:
    """A scipy CSR matrix as a float32 torch sparse CSR tensor on `device`."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")
        return torch.sparse_csr_tensor(torch.from_numpy(matrix.indptr.astype(np.int64)),
                                       torch.from_numpy(matrix.indices.astype(np.int64)),
                                       torch.from_numpy(matrix.data.astype(np.float32)),
                                       size=matrix.shape, device=device, check_invariants=True)


# ----------------------------------------------------------------------------- masks and losses


def propagate_masks(mask: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
    """Masks `[1, K, H, W]` carried to `layers` as `jaxstyle.masks.propagate_masks` does.

    Each conv: 3x3 average, stride 1, zero padding counted; each pool: 2x2 average, stride 2, floor.
    """
    wanted = set(layers)
    out: dict[str, torch.Tensor] = {}
    for spec in layer_specs(ARCH):
        if spec.kind == "conv":
            mask = F.avg_pool2d(mask, 3, stride=1, padding=1, count_include_pad=True)
        elif spec.kind == "pool":
            mask = F.avg_pool2d(mask, 2, stride=2)
        if spec.name in wanted:
            out[spec.name] = mask
            wanted.discard(spec.name)
            if not wanted:
                break
    return out


def with_style_fallback(masks: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each label whose style mask sums to < 1 pixel at a layer gets the whole style image there."""
    out = {}
    for layer, mask in masks.items():
        vanished = mask.sum(dim=(2, 3), keepdim=True) < STYLE_FALLBACK_PIXELS  # [1, K, 1, 1]
        out[layer] = torch.where(vanished, torch.ones_like(mask), mask)
    return out


def masked_grams(feats: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Grams `[K, C, C]` of `feats [1, C, h, w]` under `mask [1, K, h, w]`, and shares m_k `[K]`."""
    _, c, h, w = feats.shape
    flat = feats.reshape(c, h * w)  # [C, P]
    m = mask.reshape(-1, h * w)  # [K, P]
    shares = m.mean(dim=1)  # [K]
    weighted = m[:, None, :] * flat[None]  # [K, C, P]
    grams = weighted @ weighted.transpose(1, 2)  # [K, C, C]
    denom = h * w * c * shares
    present = shares > 0
    grams = torch.where(present[:, None, None], grams / torch.where(present, denom, 1.0)[:, None, None], 0.0)
    return grams, shares


def style_loss(feats: torch.Tensor, mask: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """sum_k m_k * mean((G_k - T_k)^2) at one layer."""
    grams, shares = masked_grams(feats, mask)
    return torch.sum(shares * torch.mean((grams - target) ** 2, dim=(1, 2)))


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """0.5 * sum over the [H-1, W-1] block of squared right and down differences, `image [1, 3, H, W]`."""
    core = image[..., :-1, :-1]
    dx = core - image[..., :-1, 1:]
    dy = core - image[..., 1:, :-1]
    return 0.5 * (torch.sum(dx ** 2) + torch.sum(dy ** 2))


def photo_energy(laplacian: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """sum_c v_c^T L v_c for `image [1, 3, H, W]` and L `[H*W, H*W]` sparse."""
    v = image[0].reshape(3, -1).T  # [H*W, 3]
    return torch.sum(v * (laplacian @ v))


# ----------------------------------------------------------------------------- objective


def _image_tensor(image: np.ndarray, device: str | torch.device) -> torch.Tensor:
    image = np.asarray(image, np.float32)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise JaxstyleError(f"expected an image [H, W, 3], got shape {image.shape}")
    return torch.from_numpy(image.transpose(2, 0, 1).copy())[None].to(device)  # [1, 3, H, W]


def _mask_tensor(mask: np.ndarray, shape: tuple[int, ...], device: str | torch.device) -> torch.Tensor:
    mask = np.asarray(mask, np.float32)
    if mask.ndim != 3 or mask.shape[:2] != tuple(shape[:2]):
        raise JaxstyleError(f"mask {mask.shape} does not match image {tuple(shape[:2])}: "
                            "parse masks with jaxstyle.masks.parse_mask_pair")
    return torch.from_numpy(mask.transpose(2, 0, 1).copy())[None].to(device)  # [1, K, H, W]


def check_weights(weights: Mapping[str, float] | None) -> dict[str, float]:
    """DEFAULT_WEIGHTS updated with `weights`; unknown names get a 'did you mean' hint."""
    merged = dict(DEFAULT_WEIGHTS)
    for key, value in (weights or {}).items():
        if key not in DEFAULT_WEIGHTS:
            raise JaxstyleError(f"unknown loss weight {key!r}{did_you_mean(key, TERMS)}")
        merged[key] = float(value)
    return merged


def prepare_targets(vgg: VGG16, content: np.ndarray, style: np.ndarray, content_mask: np.ndarray | None,
                    style_mask: np.ndarray | None, *, device: str | torch.device) -> dict[str, Any]:
    """Content features, style Grams `[K, C, C]` and content masks per style layer (no Laplacian)."""
    if (content_mask is None) != (style_mask is None):
        raise JaxstyleError("give both a content mask and a style mask, or neither")
    if content_mask is None:
        content_mask = np.ones((*np.shape(content)[:2], 1), np.float32)
        style_mask = np.ones((*np.shape(style)[:2], 1), np.float32)
    if np.shape(content_mask)[-1] != np.shape(style_mask)[-1]:
        raise JaxstyleError(f"content mask has {np.shape(content_mask)[-1]} labels, style mask "
                            f"{np.shape(style_mask)[-1]}: build both with jaxstyle.masks.parse_mask_pair")
    c, s = _image_tensor(content, device), _image_tensor(style, device)
    cm = _mask_tensor(content_mask, np.shape(content), device)
    sm = _mask_tensor(style_mask, np.shape(style), device)
    with torch.no_grad():
        content_feats = vgg(c, CONTENT_LAYERS)
        style_feats = vgg(s, STYLE_LAYERS)
        style_masks = with_style_fallback(propagate_masks(sm, STYLE_LAYERS))
        grams = {layer: masked_grams(UNIT * style_feats[layer], style_masks[layer])[0] for layer in STYLE_LAYERS}
        return {"content": {layer: UNIT * content_feats[layer] for layer in CONTENT_LAYERS},
                "grams": grams, "masks": propagate_masks(cm, STYLE_LAYERS)}


def objective(vgg: VGG16, targets: Mapping[str, Any], laplacian: torch.Tensor | None, image: torch.Tensor,
              weights: Mapping[str, float]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted loss of `image [1, 3, H, W]` and its terms; photo is 0 when `laplacian` is None."""
    feats = vgg(image, tuple(dict.fromkeys(CONTENT_LAYERS + STYLE_LAYERS)))
    content = sum(torch.mean((UNIT * feats[layer] - targets["content"][layer]) ** 2) for layer in CONTENT_LAYERS)
    style = sum(style_loss(UNIT * feats[layer], targets["masks"][layer], targets["grams"][layer])
                for layer in STYLE_LAYERS)
    terms = {"content": weights["content"] * content, "style": weights["style"] * style,
             "tv": weights["tv"] * total_variation(PIXEL_SCALE * image)}
    terms["photo"] = (weights["photo"] * photo_energy(laplacian, image) if laplacian is not None
                      else torch.zeros((), device=image.device))
    return sum(terms.values()), terms


def objective_value(content: np.ndarray, style: np.ndarray, image: np.ndarray,
                    content_mask: np.ndarray | None = None, style_mask: np.ndarray | None = None, *,
                    weights: Mapping[str, float] | None = None, use_photo: bool = True,
                    device: str = "cpu") -> tuple[float, dict[str, float]]:
    """The stage-2 objective (stage 1's with `use_photo=False`) of `image [H, W, 3]`: (total, weighted terms)."""
    weights = check_weights(weights)
    vgg = load_vgg16(device)
    targets = prepare_targets(vgg, content, style, content_mask, style_mask, device=device)
    laplacian = None
    if use_photo and weights["photo"] != 0:
        laplacian = to_torch_csr(matting_laplacian(content), device)
    with torch.no_grad():
        total, terms = objective(vgg, targets, laplacian, _image_tensor(image, device), weights)
    return float(total), {k: float(v) for k, v in terms.items()}


# ----------------------------------------------------------------------------- optimisation


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_rss_reset() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) for this process; False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _rss_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _warm_up(vgg: VGG16, targets: Mapping[str, Any], laplacian: torch.Tensor | None, x: torch.Tensor,
             weights: Mapping[str, float]) -> None:
    """One untimed forward and backward (kernel selection, allocator growth), like a JIT's first call."""
    x = x.detach().clone().requires_grad_(True)
    objective(vgg, targets, laplacian, x, weights)[0].backward()


def _run_stage(vgg: VGG16, targets: Mapping[str, Any], laplacian: torch.Tensor | None, x0: torch.Tensor,
               weights: Mapping[str, float], iterations: int, memory_size: int,
               line_search: str = "strong_wolfe") -> tuple[torch.Tensor, dict]:
    """One L-BFGS stage from `x0`; returns the final iterate and its timing record."""
    x = x0.detach().clone().requires_grad_(True)
    with torch.no_grad():
        initial = float(objective(vgg, targets, laplacian, x, weights)[0])
    record = {"iterations": 0, "seconds": 0.0, "seconds_per_iteration": float("nan"), "evaluations": 0,
              "initial_loss": initial, "final_loss": initial}
    if iterations == 0:
        return x.detach(), record
    # Tolerances 0: run exactly `iterations` iterations unless the step vanishes.
    opt = torch.optim.LBFGS([x], lr=1.0, max_iter=iterations, max_eval=iterations * LINE_SEARCH_EVALS,
                            tolerance_grad=0.0, tolerance_change=0.0, history_size=memory_size,
                            line_search_fn=None if line_search == "none" else line_search)
    evaluations = 0

    def closure() -> torch.Tensor:
        nonlocal evaluations
        evaluations += 1
        opt.zero_grad()
        loss, _ = objective(vgg, targets, laplacian, x, weights)
        loss.backward()
        return loss

    _sync(x.device)
    start = time.perf_counter()
    opt.step(closure)
    _sync(x.device)
    seconds = time.perf_counter() - start
    done = int(opt.state[x]["n_iter"])
    with torch.no_grad():
        final = float(objective(vgg, targets, laplacian, x, weights)[0])
    record.update(iterations=done, seconds=seconds, seconds_per_iteration=seconds / max(done, 1),
                  evaluations=evaluations, final_loss=final)
    return x.detach(), record


def run_baseline(content: np.ndarray, style: np.ndarray, content_mask: np.ndarray | None = None,
                 style_mask: np.ndarray | None = None, *, iterations: tuple[int, int] = (100, 100),
                 weights: Mapping[str, float] | None = None, memory_size: int = 20, threads: int | None = None,
                 device: str = "cpu", line_search: str = "strong_wolfe") -> dict[str, Any]:
    """Two-stage DPST in PyTorch, timed.

    Args:
      content, style: float32 `[H, W, 3]` / `[Hs, Ws, 3]` RGB in [0, 1].
      content_mask, style_mask: `[H, W, K]` / `[Hs, Ws, K]` one-hot stacks, or both None.
      iterations: L-BFGS iterations of stage 1 (no photo term) and stage 2 (with it).
      weights: overrides of DEFAULT_WEIGHTS (content, style, tv, photo).
      memory_size: L-BFGS history (jaxstyle's OptimConfig.memory_size).
      threads: torch intra-op threads (default os.cpu_count(), like XLA); restored afterwards.
      device: "cpu" or "cuda" (any torch device string).
      line_search: "strong_wolfe" (torch's, up to 25 evaluations per iteration) or "none"
        (fixed step lr=1, first step scaled by min(1, 1/|g|_1); one evaluation per iteration).

    Returns:
      setup_seconds {weights, laplacian, targets, warmup, total} (warmup: one untimed
      forward and backward before stage 1); stage1 / stage2 {iterations, seconds,
      seconds_per_iteration, evaluations, initial_loss, final_loss}; final_loss and final_terms (the stage-2
      objective at the final iterate, unclipped); peak_rss_mb (this run's peak resident set,
      process-wide, from VmHWM after resetting it; the lifetime peak where it cannot be reset)
      with start_rss_mb and peak_rss_method; peak_device_mb on CUDA; image `[H, W, 3]` clipped to [0, 1].
    """
    weights = check_weights(weights)
    n1, n2 = (int(n) for n in iterations)
    if n1 < 0 or n2 < 0 or memory_size < 1:
        raise JaxstyleError(f"iterations must be >= 0 and memory_size >= 1, got {iterations}, {memory_size}")
    if line_search not in LINE_SEARCHES:
        raise JaxstyleError(f"unknown line search {line_search!r}{did_you_mean(line_search, LINE_SEARCHES)}; "
                            f"choose one of {', '.join(LINE_SEARCHES)}")
    dev = torch.device(device)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads or os.cpu_count() or 1)
    reset = _peak_rss_reset()
    start_rss = _rss_mb("VmRSS")
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    try:
        setup: dict[str, float] = {}
        t0 = time.perf_counter()
        vgg = load_vgg16(dev)
        _sync(dev)
        setup["weights"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        laplacian = to_torch_csr(matting_laplacian(content), dev) if weights["photo"] != 0 else None
        _sync(dev)
        setup["laplacian"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        targets = prepare_targets(vgg, content, style, content_mask, style_mask, device=dev)
        _sync(dev)
        setup["targets"] = time.perf_counter() - t2
        t3 = time.perf_counter()
        _warm_up(vgg, targets, laplacian, _image_tensor(content, dev), weights)
        _sync(dev)
        setup["warmup"] = time.perf_counter() - t3
        setup["total"] = time.perf_counter() - t0

        x = _image_tensor(content, dev)
        x, stage1 = _run_stage(vgg, targets, None, x, weights, n1, memory_size, line_search)
        x, stage2 = _run_stage(vgg, targets, laplacian, x, weights, n2, memory_size, line_search)
        with torch.no_grad():
            final, terms = objective(vgg, targets, laplacian, x, weights)
        result = {
            "setup_seconds": setup, "stage1": stage1, "stage2": stage2,
            "final_loss": float(final), "final_terms": {k: float(v) for k, v in terms.items()},
            "image": np.clip(x[0].permute(1, 2, 0).cpu().numpy(), 0.0, 1.0),
            "threads": torch.get_num_threads(), "device": str(dev), "torch_version": torch.__version__,
            "line_search": line_search,
        }
    finally:
        torch.set_num_threads(previous_threads)
    peak = _rss_mb("VmHWM")
    if peak is None or not reset:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    result.update(peak_rss_mb=peak, start_rss_mb=start_rss,
                  peak_rss_method="VmHWM after clear_refs" if reset else "ru_maxrss (process lifetime)")
    if dev.type == "cuda":
        result["peak_device_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
    return result


# ----------------------------------------------------------------------------- CLI


def _summary(result: Mapping[str, Any]) -> str:
    s = result["setup_seconds"]
    lines = [f"torch {result['torch_version']} on {result['device']}, {result['threads']} threads, "
             f"line search {result['line_search']}",
             f"setup: weights {s['weights']:.2f} s, laplacian {s['laplacian']:.2f} s, "
             f"targets {s['targets']:.2f} s, warm-up {s['warmup']:.2f} s, total {s['total']:.2f} s"]
    for name in ("stage1", "stage2"):
        r = result[name]
        lines.append(f"{name}: {r['iterations']} iterations, {r['evaluations']} evaluations, {r['seconds']:.2f} s "
                     f"({1e3 * r['seconds_per_iteration']:.1f} ms/iteration), loss {r['initial_loss']:.6g} -> "
                     f"{r['final_loss']:.6g}")
    terms = ", ".join(f"{k} {v:.6g}" for k, v in result["final_terms"].items())
    lines.append(f"final loss {result['final_loss']:.6g} ({terms})")
    lines.append(f"peak RSS {result['peak_rss_mb']:.0f} MB ({result['peak_rss_method']}; "
                 f"{result['start_rss_mb']:.0f} MB at start)")
    if "peak_device_mb" in result:
        lines.append(f"peak device memory {result['peak_device_mb']:.0f} MB")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Deep Photo Style Transfer in PyTorch (speed baseline).")
    parser.add_argument("content")
    parser.add_argument("style")
    parser.add_argument("--content-mask")
    parser.add_argument("--style-mask")
    parser.add_argument("--iterations", type=int, nargs=2, default=(100, 100), metavar=("STAGE1", "STAGE2"))
    parser.add_argument("--size", type=int, default=None, help="longer side of both images (downscale only)")
    parser.add_argument("--memory-size", type=int, default=20)
    parser.add_argument("--line-search", choices=LINE_SEARCHES, default="strong_wolfe")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output", help="write the result image here (PNG/JPEG)")
    for term, value in DEFAULT_WEIGHTS.items():
        parser.add_argument(f"--{term}-weight", type=float, default=value)
    args = parser.parse_args(argv)

    from jaxstyle.reading import load_image
    from jaxstyle.masks import parse_mask_pair

    content = load_image(args.content, max_side=args.size)
    style = load_image(args.style, max_side=args.size)
    cm = sm = None
    if args.content_mask or args.style_mask:
        pair = parse_mask_pair(args.content_mask, args.style_mask, content_shape=content.shape[:2],
                               style_shape=style.shape[:2])
        cm, sm = pair.content, pair.style
    result = run_baseline(content, style, cm, sm, iterations=tuple(args.iterations),
                          weights={t: getattr(args, f"{t}_weight") for t in TERMS},
                          memory_size=args.memory_size, threads=args.threads, device=args.device,
                          line_search=args.line_search)
    print(f"{content.shape[0]}x{content.shape[1]} content, {style.shape[0]}x{style.shape[1]} style")
    print(_summary(result))
    if args.output:
        from jaxstyle.writing import save_image

        save_image(result["image"], args.output, overwrite=True,
                   protect=(args.content, args.style))
    return 0


if __name__ == "__main__":
    sys.exit(main())
