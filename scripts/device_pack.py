"""Pack what `scripts/device_train_lab.sh` needs on a lent GPU machine into folders the `device` tool can carry
(64 MiB in all): PBC's train and val splits at a reduced size, as JPEG at quality 95 without chroma subsampling
(64 px: 46 MB; lossless PNG would be 99 MB, over the limit), with a manifest; and the diffusers wheel (the device
image has PyTorch, accelerate, safetensors, scikit-image and pandas, not diffusers).

    python scripts/device_pack.py --data ../shared/data/pbc --out .devicedata --size 64

Both folders must be git-ignored (`echo /.devicedata/ >> .git/info/exclude`) and named in the call's `carry`.
"""
from __future__ import annotations

import argparse
import csv
import subprocess
import sys
from pathlib import Path

from PIL import Image

from cytomodel.data.dataset import load_dataset


def pack(data: str, out: Path, size: int, splits: list[str]) -> int:
    """Write ``out/pbc{size}/<class>/<split>_<i>.jpg`` and its manifest.csv; returns the number of images."""
    root = out / f"pbc{size}"
    rows = []
    for split in splits:
        arrays = load_dataset(data, size, split=split)
        for i, (img, label) in enumerate(zip(arrays.images, arrays.labels)):
            name = arrays.class_names[int(label)]
            rel = Path(name) / f"{split}_{i:05d}.jpg"
            (root / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(root / rel, quality=95, subsampling=0)
            rows.append({"path": rel.as_posix(), "label": name, "split": split})
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "label", "split"])
        w.writeheader()
        w.writerows(rows)
    return len(rows)


def download_wheels(out: Path, packages: list[str]) -> None:
    """Pure-Python wheels for the device's Python 3.12 (nothing is fetched there)."""
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", "-d", str(out), *packages], check=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="PBC with manifest.csv (../shared/data/pbc)")
    p.add_argument("--out", default=".devicedata", help="folder to carry (%(default)s)")
    p.add_argument("--size", type=int, default=64, help="image side in pixels (%(default)s)")
    p.add_argument("--splits", nargs="+", default=["train", "val"])
    p.add_argument("--wheels", default=".whl", help="folder for the wheels (%(default)s); '' to skip")
    args = p.parse_args(argv)
    out = Path(args.out)
    n = pack(args.data, out, args.size, args.splits)
    print(f"{n} images -> {out / f'pbc{args.size}'}")
    if args.wheels:
        from importlib.metadata import version
        download_wheels(Path(args.wheels), [f"diffusers=={version('diffusers')}"])


if __name__ == "__main__":
    main()
