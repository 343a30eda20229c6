"""Read times of today's photo reader against the hand-written 16-bit decoders it replaced.

Makes four photos of `--megapixels` (4:3, the bundled demo content resized with Lanczos, with a
little seeded noise so that the low bits of the 16-bit files are not empty, as a camera's are):

- a 16-bit RGB TIFF, LZW with the horizontal-differencing predictor (as Photoshop writes it),
- the same TIFF uncompressed,
- a 16-bit RGB PNG (libpng's adaptive filters, through `imagecodecs`),
- an 8-bit JPEG (quality 92).

Each is read `--repeats` times (after one untimed read) in two ways, alternating:

- today: `jaxstyle.reading.read_photo` (what `load_image`, `transfer` and `batch` call): Pillow
  opens the file, `tifffile` + `imagecodecs` or `imagecodecs` (libpng) decode the 16-bit ones;
- hand-written: the reader of `--commit` (default 4a9cf82, the code issue 29 was written against,
  with its `tiff16.py` and `png16.py`): Pillow opens the file and reads its EXIF, then `tiff16.read_tiff16` /
  `png16.read_png16` decode it, loaded from that commit with `git show` into temporary modules
  (nothing old is copied into the repository); the JPEG goes through Pillow as it always did (a
  control row: its ratio shows the reader's own overhead).

Both give float32 `[H, W, 3]` in [0, 1]; the largest difference between their pixels is reported
(0 expected). Reported per photo: file size, the median (and min-max) seconds of each reader, and
the ratio today / hand-written, with the machine's XLA convolution GFLOP/s from the same run.

    python scripts/bench_read.py --json docs/bench/read.json
    python scripts/bench_read.py --megapixels 0.1 --repeats 2   # a smoke run
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np

SCRIPTS = Path(__file__).resolve().parent
REPO = SCRIPTS.parent
sys.path.insert(0, str(SCRIPTS))

import _bench_common as common  # noqa: E402

OLD_COMMIT = "4a9cf82"
NOISE = 0.002  # standard deviation of the added noise, in [0, 1] units (about 130 16-bit levels)
JPEG_QUALITY = 92
EXIF_ORIENTATION = 0x0112


def old_module(commit: str, name: str) -> types.ModuleType:
    """`jaxstyle/{name}.py` as it was at `commit`, run as a temporary module `_old_{name}`."""
    where = f"{commit}:jaxstyle/{name}.py"
    shown = subprocess.run(["git", "show", where], cwd=REPO, capture_output=True, text=True)
    if shown.returncode != 0:
        raise SystemExit(f"git show {where} failed ({shown.stderr.strip()}); run from a clone with its history")
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(f"_old_{name}", loader=None))
    sys.modules[module.__name__] = module  # NamedTuple and dataclasses look their module up
    exec(compile(shown.stdout, where, "exec"), module.__dict__)
    return module


def make_photos(folder: Path, megapixels: float, seed: int = 0) -> dict[str, Path]:
    """The four test photos of about `megapixels` (4:3), by the libraries' own writers."""
    import imagecodecs
    import tifffile
    from PIL import Image

    from jaxstyle import reading, sizing

    w = int(round((megapixels * 1e6 * 4 / 3) ** 0.5))
    h = w * 3 // 4
    image = sizing.resize_image(reading.load_image(reading.demo_paths()[0]), (h, w))  # [h, w, 3]
    noise = np.random.default_rng(seed).normal(0.0, NOISE, image.shape).astype(np.float32)
    deep = np.round(np.clip(image + noise, 0.0, 1.0) * 65535).astype(np.uint16)
    paths = {"TIFF 16-bit LZW": folder / "lzw.tif", "TIFF 16-bit uncompressed": folder / "plain.tif",
             "PNG 16-bit": folder / "deep.png", "JPEG 8-bit": folder / "photo.jpg"}
    tifffile.imwrite(paths["TIFF 16-bit LZW"], deep, photometric="rgb", compression="lzw", predictor=True)
    tifffile.imwrite(paths["TIFF 16-bit uncompressed"], deep, photometric="rgb")
    paths["PNG 16-bit"].write_bytes(imagecodecs.png_encode(deep))
    Image.fromarray(np.round(image * 255).astype(np.uint8)).save(paths["JPEG 8-bit"], quality=JPEG_QUALITY)
    return paths


def today_reader() -> Callable[[Path], np.ndarray]:
    from jaxstyle import reading

    return lambda path: reading.read_photo(path).pixels


def hand_written_reader(commit: str, kind: str) -> Callable[[Path], np.ndarray]:
    """The reader of `commit` for a photo of `kind`: Pillow opens it and reads its EXIF, then the
    hand-written decoder reads a 16-bit file (Pillow an 8-bit one), as float32 `[H, W, 3]`."""
    from PIL import Image, ImageOps

    if kind.startswith("JPEG"):
        def read(path: Path) -> np.ndarray:
            with Image.open(path) as im:
                im.load()
                im.getexif()
                return np.asarray(ImageOps.exif_transpose(im).convert("RGB"), dtype=np.float32) / 255.0

        return read
    if kind.startswith("PNG"):
        decode = old_module(commit, "png16").read_png16
    else:
        tiff16 = old_module(commit, "tiff16")

        def decode(path: Path) -> np.ndarray:
            return tiff16.read_tiff16(path).pixels

    def read(path: Path) -> np.ndarray:
        with Image.open(path) as im:  # the header and EXIF, left undecoded as the old reader left them
            orientation = im.getexif().get(EXIF_ORIENTATION, 1)
        stored = decode(path)
        if orientation != 1:
            raise SystemExit(f"{path}: orientation {orientation}; the test photos are upright")
        return stored[..., :3].astype(np.float32) / 65535.0

    return read


def time_reads(readers: dict[str, Callable[[Path], np.ndarray]], path: Path,
               repeats: int) -> tuple[dict[str, list[float]], dict[str, np.ndarray]]:
    """Seconds of each reader on `path`, `repeats` times after one untimed read, taking turns."""
    pixels = {name: read(path) for name, read in readers.items()}  # warm-up (imports, caches)
    times: dict[str, list[float]] = {name: [] for name in readers}
    for _ in range(repeats):
        for name, read in readers.items():
            start = time.perf_counter()
            read(path)
            times[name].append(time.perf_counter() - start)
    return times, pixels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megapixels", type=float, default=12.0)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--commit", default=OLD_COMMIT, help="The commit whose hand-written decoders are timed.")
    parser.add_argument("--json", help="Also write the results here.")
    args = parser.parse_args(argv)
    if args.megapixels <= 0 or args.repeats < 1:
        parser.error("--megapixels must be positive and --repeats at least 1")
    machine = common.describe_machine()
    gflops = common.conv_gflops()
    print(f"{common.machine_line(machine)}, XLA convolution {gflops:.0f} GFLOP/s", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        photos = make_photos(Path(tmp), args.megapixels)
        for kind, path in photos.items():
            readers = {"today": today_reader(), "hand_written": hand_written_reader(args.commit, kind)}
            times, pixels = time_reads(readers, path, args.repeats)
            new, old = common.summarize(times["today"]), common.summarize(times["hand_written"])
            rows.append({"format": kind, "size": list(pixels["today"].shape[:2]), "file_mb": path.stat().st_size / 1e6,
                         "today_s": new, "hand_written_s": old, "ratio_today_over_hand_written":
                         common.ratio(new["median"], old["median"]),
                         "max_abs_difference": float(np.max(np.abs(pixels["today"] - pixels["hand_written"])))})
    h, w = rows[0]["size"]
    print(f"{w}x{h} px ({h * w / 1e6:.1f} MP), median [min-max] seconds of {args.repeats} reads, "
          f"hand-written decoders of {args.commit}")
    print(common.markdown_table(
        ["photo", "file MB", "today s", "hand-written s", "today / hand-written", "max difference"],
        [[r["format"], f"{r['file_mb']:.1f}", common.fmt_summary(r["today_s"]), common.fmt_summary(r["hand_written_s"]),
          common.fmt(r["ratio_today_over_hand_written"]), f"{r['max_abs_difference']:.3g}"] for r in rows]))
    if args.json:
        common.write_json(args.json, {"machine": machine, "conv_gflops": gflops, "settings": vars(args),
                                      "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
