"""`jaxstyle apply` on a whole shoot: seconds a photo for a saved look and for a `.cube` LUT.

Makes `--photos` JPEGs of `--megapixels` (4:3, the bundled demo content resized with Lanczos and
shifted a little each, with an sRGB ICC profile and an EXIF block), a look (a grid fitted to a
recolouring of the content: the cost of applying a look does not depend on its values) and its
`.cube`, then runs the command as people type it, in a new process each:

    jaxstyle apply LOOK PHOTO ... -o DIR

Reported: wall seconds from the process's start to its exit and per photo (Python start and
imports included), the per-photo times the command prints, the child's peak resident memory,
and whether every result kept its photo's ICC profile and EXIF. The machine's speed (XLA
convolution GFLOP/s) is measured in the same run.

    python scripts/bench_apply.py --json docs/bench/apply.json
"""

from __future__ import annotations

import argparse
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SCRIPTS = Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPTS))

import _bench_common as common  # noqa: E402

PER_PHOTO = re.compile(r"\[(\d+)/(\d+)\] .* \(([\d.]+) s\)")


def make_photos(folder: Path, count: int, megapixels: float) -> list[Path]:
    """`count` 4:3 JPEGs of about `megapixels`, each with an sRGB ICC profile and EXIF."""
    from PIL import Image, ImageCms

    from jaxstyle import reading

    content = Image.open(reading.sample_paths()[0]).convert("RGB")
    w = int(round((megapixels * 1e6 * 4 / 3) ** 0.5))
    h = w * 3 // 4
    base = content.resize((w + 64, h + 48), Image.LANCZOS)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    paths = []
    for i in range(count):
        exif = Image.Exif()
        exif[0x010F], exif[0x0110], exif[0x0131] = "bench", f"photo {i}", "bench_apply"
        x, y = (7 * i) % 64, (5 * i) % 48
        path = folder / f"photo_{i:02d}.jpg"
        base.crop((x, y, x + w, y + h)).save(path, quality=92, icc_profile=icc, exif=exif)
        paths.append(path)
    return paths


def make_looks(folder: Path) -> tuple[Path, Path]:
    """A look file and its `.cube`: a grid fitted to a warm, contrasty recolouring of the content."""
    import jax.numpy as jnp

    from jaxstyle import cube, grid, look

    content, _ = common.sample_inputs(512)
    target = np.clip((content - 0.5) * 1.2 + 0.5, 0, 1) * np.asarray([1.08, 1.0, 0.85], np.float32)
    shape = grid.grid_shape(content.shape[:2], cell=8, depth=8)
    fitted = np.asarray(grid.fit_grid(jnp.asarray(content), jnp.asarray(target), shape))
    look_path = look.save_look(folder / "look.npz", fitted, metadata={"made_by": "bench_apply"})
    lut = np.asarray(cube.fit_cube(jnp.asarray(content), jnp.asarray(np.clip(target, 0, 1))))
    cube_path = folder / "look.cube"
    cube.write_cube(cube_path, lut, title="bench_apply")
    return look_path, cube_path


def kept_metadata(photo: Path, result: Path) -> bool:
    """Whether `result` carries `photo`'s ICC profile and its EXIF camera make and model (the
    result's Software field names jaxstyle instead, by design)."""
    from PIL import Image

    with Image.open(photo) as a, Image.open(result) as b:
        exif_a, exif_b = a.getexif(), b.getexif()
        same_exif = all(exif_b.get(k) == v for k, v in exif_a.items() if k in (0x010F, 0x0110))
        return a.info.get("icc_profile") == b.info.get("icc_profile") and same_exif


def run_apply(look_path: Path, photos: list[Path], outdir: Path) -> dict:
    """One `jaxstyle apply` process; its wall time, printed per-photo times and peak RSS."""
    cmd = [str(Path(sys.executable).parent / "jaxstyle"), "apply", str(look_path), *map(str, photos), "-o", str(outdir)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"jaxstyle apply failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    per_photo = [float(m.group(3)) for m in PER_PHOTO.finditer(proc.stderr)]
    results = sorted(outdir.iterdir())
    kept = all(kept_metadata(p, outdir / p.name) for p in photos)
    return {"look": look_path.name, "photos": len(photos), "wall_s": wall, "wall_per_photo_s": wall / len(photos),
            "printed_per_photo_s": common.summarize(per_photo), "results": len(results), "icc_and_exif_kept": kept,
            "peak_rss_mb": max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=20)
    parser.add_argument("--megapixels", type=float, default=12.0)
    parser.add_argument("--json", help="Also write the results here.")
    args = parser.parse_args(argv)
    machine = common.describe_machine()
    gflops = common.conv_gflops()
    print(f"{common.machine_line(machine)}, XLA convolution {gflops:.0f} GFLOP/s", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "photos").mkdir()
        photos = make_photos(tmp / "photos", args.photos, args.megapixels)
        looks = make_looks(tmp)
        for look_path in looks:
            out = tmp / f"out_{look_path.suffix[1:]}"
            rows.append(run_apply(look_path, photos, out))
            r = rows[-1]
            print(f"{r['look']}: {r['photos']} photos in {r['wall_s']:.1f} s, {r['wall_per_photo_s']:.2f} s a photo "
                  f"end to end (printed per photo: median {r['printed_per_photo_s']['median']:.2f} s), "
                  f"ICC and EXIF kept: {r['icc_and_exif_kept']}, peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
    if args.json:
        common.write_json(args.json, {"machine": machine, "conv_gflops": gflops, "settings": vars(args), "runs": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
