"""The look's global part as a 3D LUT: fitted from a pair, applied, and kept as a `.cube` file.

Images are float32 `[H, W, 3]` RGB in [0, 1]. A LUT is float32 `[N, N, N, 3]`, indexed
`[r, g, b]`: node `(i, j, k)` holds the output colour of the input `(i, j, k) / (N - 1)`, and
colours between nodes are interpolated trilinearly. The file is the Adobe/IRIDAS `.cube` text
form that ffmpeg's `lut3d`, Resolve, Premiere and Photoshop read: `LUT_3D_SIZE N`, then N^3
lines `r g b` with red changing fastest, domain [0, 1] (no DOMAIN lines).

`fit_cube` finds the LUT that reproduces a result from its content best: least squares over
the photo's colours, each splatted trilinearly onto the corners of its lattice cell, plus a
small curvature term (squared second differences between lattice neighbours) that fills the
colours the photo lacks smoothly. The energy is written once (`cube_energy`) and solved by
conjugate gradients on its gradient (`jax.linearize(jax.grad(...))`), from the pair's global
affine map, which the curvature term leaves as it is.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle import filesafety, grid
from jaxstyle.errors import JaxstyleError
from jaxstyle.images import check_image

__all__ = [
    "CUBE_SIZE", "FIT_PIXELS", "affine_cube", "apply_cube", "apply_cube_host", "cell_corners", "cell_weights",
    "check_size", "cube_energy", "curvature", "fit_cube", "fit_pixels", "identity_cube", "normal_equations",
    "read_cube", "write_cube",
]

CUBE_SIZE = 33  # lattice nodes per axis, the common size (17 and 65 are the others)
MAX_CUBE_SIZE = 65
# The curvature term's weight against the data's mean squared error. Small: where the photo
# has colours they decide; where it has none the lattice continues its neighbours' trend.
SMOOTHNESS = 1e-2
# From the affine start the fit is done by then; more steps only chase the sparsest colours.
CG_ITERATIONS = 100
FIT_PIXELS = 512 * 512  # a pair is fitted on about this many of its pixels (the working size)
CHUNK = 1 << 18  # pixels per call when applying a LUT on the host: one program for every size
DIGITS = 6  # decimals of each value in a .cube file
CORNERS = np.asarray(list(itertools.product((0, 1), repeat=3)), np.int32)  # [8, 3] a cell's corners


def identity_cube(size: int = CUBE_SIZE) -> np.ndarray:
    """The LUT `[size, size, size, 3]` that leaves every colour as it is."""
    check_size(size)
    axis = np.linspace(0.0, 1.0, size, dtype=np.float32)
    return np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1)


def check_size(size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 2 <= size <= MAX_CUBE_SIZE:
        raise JaxstyleError(f"--cube-size must be from 2 to {MAX_CUBE_SIZE} (17, 33 and 65 are the usual "
                            f"sizes), got {size!r}")


def _check_lut(lut: jax.Array) -> None:
    n = lut.shape[0] if lut.ndim else 0
    if lut.ndim != 4 or lut.shape != (n, n, n, 3) or n < 2:
        raise JaxstyleError(f"a LUT is [N, N, N, 3] with N >= 2, got shape {tuple(lut.shape)}")


def cell_weights(colours: jax.Array, size: int) -> tuple[jax.Array, jax.Array]:
    """Each colour's lattice cell and trilinear weights on its corners: for `colours [P, 3]`
    the flat index `[P]` of the cell's lowest corner in an `[N-1, N-1, N-1]` array of cells and
    the weights `[P, 8]` of its corners (in `CORNERS` order)."""
    u = jnp.clip(colours, 0.0, 1.0) * (size - 1)
    low = jnp.clip(jnp.floor(u), 0, size - 2)
    f = u - low  # [P, 3]
    low = low.astype(jnp.int32)
    weights = jnp.prod(jnp.where(CORNERS == 1, f[:, None, :], 1.0 - f[:, None, :]), axis=-1)  # [P, 8]
    cells = size - 1
    return (low[:, 0] * cells + low[:, 1]) * cells + low[:, 2], weights


def cell_corners(lut: jax.Array) -> jax.Array:
    """The values at the 8 corners of every lattice cell: `[N, N, N, C]` -> `[(N-1)^3, 8, C]`."""
    n = lut.shape[0]
    corners = [lut[a:n - 1 + a, b:n - 1 + b, c:n - 1 + c] for a, b, c in CORNERS]
    return jnp.stack(corners, 3).reshape((n - 1) ** 3, 8, lut.shape[-1])


def apply_cube(lut: jax.Array, image: jax.Array) -> jax.Array:
    """`image [..., 3]` through the LUT `[N, N, N, 3]`, trilinearly (colours clipped to [0, 1]
    first) -> `[..., 3]`. Pure: jit, vmap and grad with respect to the LUT."""
    lut, image = jnp.asarray(lut), jnp.asarray(image)
    _check_lut(lut)
    if image.shape[-1:] != (3,):
        raise JaxstyleError(f"a LUT maps RGB colours [..., 3], got shape {tuple(image.shape)}")
    cell, weights = cell_weights(image.reshape(-1, 3), lut.shape[0])
    values = jnp.take(cell_corners(lut), cell, axis=0)  # [P, 8, 3]
    return jnp.einsum("pk,pkc->pc", weights.astype(lut.dtype), values).reshape(image.shape)


_apply_chunk = jax.jit(apply_cube)


def apply_cube_host(lut, photo) -> np.ndarray:
    """`apply_cube` on a photo of any size, clipped to [0, 1]: numpy `[H, W, 3]` in and out, in
    chunks of `CHUNK` pixels (one compiled program per LUT size, whatever the photo's size)."""
    lut = jnp.asarray(lut, jnp.float32)
    _check_lut(lut)
    full = np.asarray(check_image(photo, "photo"), np.float32)
    flat = full.reshape(-1, 3)
    out = np.empty_like(flat)
    for start in range(0, len(flat), CHUNK):
        piece = flat[start:start + CHUNK]
        padded = np.zeros((CHUNK, 3), np.float32)
        padded[:len(piece)] = piece
        out[start:start + len(piece)] = np.asarray(_apply_chunk(lut, padded))[:len(piece)]
    return np.clip(out, 0.0, 1.0).reshape(full.shape)


# ----------------------------------------------------------------------------- fitting


def curvature(lut: jax.Array) -> jax.Array:
    """Mean squared second difference of the lattice along each axis, summed over the axes.
    Zero for every affine map of the colours (so it pulls toward none in particular)."""
    n = lut.shape[0]
    total = 0.0
    for axis in range(3):
        ahead, here, behind = (jax.lax.slice_in_dim(lut, s, n - 2 + s, axis=axis) for s in (0, 1, 2))
        total = total + jnp.mean(jnp.square(ahead - 2.0 * here + behind))
    return total


def normal_equations(content: jax.Array, target: jax.Array, size: int) -> tuple[jax.Array, jax.Array]:
    """The data term of `cube_energy` splatted once onto the lattice's cells: for colours
    `content [P, 3]` mapped to `target [P, 3]`, the per-cell moments `[(N-1)^3, 8, 8]`
    (sum over the cell's pixels of w w^T) and the per-cell target sums `[(N-1)^3, 8, 3]`
    (sum of w y^T), both divided by P."""
    count = content.shape[0]
    cell, w = cell_weights(content, size)
    per_pixel = jnp.concatenate([(w[:, :, None] * w[:, None, :]).reshape(count, 64),
                                 (w[:, :, None] * target[:, None, :]).reshape(count, 24)], -1)
    sums = jax.ops.segment_sum(per_pixel, cell, num_segments=(size - 1) ** 3) / count  # [(N-1)^3, 88]
    return sums[:, :64].reshape(-1, 8, 8), sums[:, 64:].reshape(-1, 8, 3)


def cube_energy(lut: jax.Array, moments: jax.Array, sums: jax.Array, *, smoothness: float) -> jax.Array:
    """The LUT's mean squared error over the pair (up to a constant), from its cells'
    `normal_equations`, plus `smoothness` times its `curvature`: a quadratic in `lut`."""
    corners = cell_corners(lut)  # [(N-1)^3, 8, 3]
    data = jnp.sum(corners * (moments @ corners)) - 2.0 * jnp.sum(corners * sums)
    return data + smoothness * curvature(lut)


def affine_cube(affine: jax.Array, size: int) -> jax.Array:
    """The LUT `[size, size, size, 3]` of a global affine colour map `[3, 4]` (`jaxstyle.grid`'s
    convention: `A (c - CENTRE) + b`)."""
    colours = jnp.asarray(identity_cube(size))
    return (colours - grid.CENTRE) @ affine[:, :3].T + affine[:, 3]


def fit_cube(content: jax.Array, target: jax.Array, *, size: int = CUBE_SIZE, smoothness: float = SMOOTHNESS,
             iterations: int = CG_ITERATIONS) -> jax.Array:
    """The LUT `[size, size, size, 3]` that best maps `content` to `target` (both `[H, W, 3]` or
    `[P, 3]` colours), clipped to [0, 1]: `cube_energy` minimised by `iterations` steps of
    conjugate gradients from the pair's global affine map. Pure: jit (with `size` static)."""
    check_size(size)
    content = jnp.asarray(content, jnp.float32).reshape(-1, 3)
    target = jnp.asarray(target, jnp.float32).reshape(-1, 3)
    if content.shape != target.shape:
        raise JaxstyleError(f"content {tuple(content.shape)} and target {tuple(target.shape)} must have "
                            "the same colours")
    moments, sums = normal_equations(content, target, size)
    start = affine_cube(grid.global_affine(content, target), size)
    energy = functools.partial(cube_energy, moments=moments, sums=sums, smoothness=smoothness)
    gradient, hessian = jax.linearize(jax.grad(energy), start)
    step, _ = jax.scipy.sparse.linalg.cg(hessian, -gradient, maxiter=iterations)
    return jnp.clip(start + step, 0.0, 1.0)


def fit_pixels(content: np.ndarray, result: np.ndarray, *, pixels: int = FIT_PIXELS
               ) -> tuple[np.ndarray, np.ndarray]:
    """Matching pixels of a photo and its result (`[H, W, 3]` each) on an even stride that
    leaves about `pixels` of them: `[P, 3]` each. A stride, not a resize, keeps each pair exact."""
    if content.shape != result.shape:
        raise JaxstyleError(f"content {content.shape} and result {result.shape} must have the same size")
    step = max(1, math.floor(math.sqrt(content.shape[0] * content.shape[1] / pixels)))
    return (np.ascontiguousarray(content[::step, ::step]).reshape(-1, 3),
            np.ascontiguousarray(result[::step, ::step]).reshape(-1, 3))


# ----------------------------------------------------------------------------- the .cube file


def write_cube(path, lut, *, title: str | None = None, comments: tuple[str, ...] = (),
               overwrite: bool = False) -> Path:
    """Write the LUT `[N, N, N, 3]` as a `.cube` file, atomically; `comments` become `#` lines.
    An existing file is replaced only with `overwrite`. Returns the path."""
    path = Path(path)
    lut = np.asarray(lut, np.float32)
    _check_lut(lut)
    if path.exists() and not overwrite:
        raise JaxstyleError(f"{path} exists: pass --force (overwrite=True) to replace it, or choose another name")
    lines = [f"# {c}" for c in comments]
    if title is not None:
        lines.append(f'TITLE "{title.replace(chr(34), chr(39))}"')
    lines.append(f"LUT_3D_SIZE {lut.shape[0]}")
    rows = np.clip(lut, 0.0, 1.0).transpose(2, 1, 0, 3).reshape(-1, 3)  # [b, g, r]: red fastest
    body = "\n".join(" ".join(f"{v:.{DIGITS}f}" for v in row) for row in rows.tolist())
    text = "\n".join(lines) + "\n" + body + "\n"
    filesafety.write_atomically(path, lambda f: f.write(text.encode("ascii")))
    return path


_KEYWORD = re.compile(r"[A-Z_0-9]+")


def read_cube(path) -> np.ndarray:
    """The LUT `[N, N, N, 3]` (indexed `[r, g, b]`) of a 3D `.cube` file with domain [0, 1]."""
    path = Path(path)
    if not path.is_file():
        raise JaxstyleError(f"{path}: no such file; give a .cube LUT file")
    try:
        text = path.read_text(encoding="ascii")
    except UnicodeDecodeError:
        raise JaxstyleError(f"{path} is not a .cube text file (it has non-ASCII bytes)") from None
    size, rows = None, []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword = _KEYWORD.match(line)
        if keyword and keyword.group() in ("TITLE", "LUT_3D_SIZE", "LUT_1D_SIZE", "DOMAIN_MIN", "DOMAIN_MAX",
                                           "LUT_3D_INPUT_RANGE", "LUT_1D_INPUT_RANGE"):
            name, value = keyword.group(), line[keyword.end():].split()
            if name == "LUT_3D_SIZE":
                size = _size_field(path, number, value)
            elif name in ("LUT_1D_SIZE", "LUT_1D_INPUT_RANGE"):
                raise JaxstyleError(f"{path}:{number}: a 1D LUT; jaxstyle reads 3D LUTs (LUT_3D_SIZE)")
            elif name != "TITLE" and not _unit_domain(name, value):
                raise JaxstyleError(f"{path}:{number}: {line!r}: jaxstyle reads LUTs over [0, 1] only")
            continue
        try:
            rows.append([float(v) for v in line.split()])
        except ValueError:
            raise JaxstyleError(f"{path}:{number}: {line!r} is neither a keyword nor three numbers; "
                                "is this a .cube file?") from None
        if len(rows[-1]) != 3:
            raise JaxstyleError(f"{path}:{number}: {line!r}: a LUT line has three numbers (r g b)")
    if size is None:
        raise JaxstyleError(f"{path} has no LUT_3D_SIZE line: it is not a 3D .cube LUT")
    if len(rows) != size ** 3:
        raise JaxstyleError(f"{path}: LUT_3D_SIZE {size} needs {size ** 3} lines of values, found {len(rows)}")
    return np.asarray(rows, np.float32).reshape(size, size, size, 3).transpose(2, 1, 0, 3).copy()


def _size_field(path: Path, number: int, value: list[str]) -> int:
    if len(value) != 1 or not value[0].isdigit() or not 2 <= int(value[0]) <= 256:
        raise JaxstyleError(f"{path}:{number}: LUT_3D_SIZE must be one whole number from 2 to 256")
    return int(value[0])


def _unit_domain(name: str, value: list[str]) -> bool:
    """Whether a DOMAIN_MIN/DOMAIN_MAX/LUT_3D_INPUT_RANGE line says what the default says."""
    try:
        numbers = [float(v) for v in value]
    except ValueError:
        return False
    expected = {"DOMAIN_MIN": [0.0] * 3, "DOMAIN_MAX": [1.0] * 3, "LUT_3D_INPUT_RANGE": [0.0, 1.0]}[name]
    return numbers == expected
