"""How these crops were made: 96×96 HR crops of public-domain / CC0 photographs from the benchmark set
(benchmarks/photos.py builds it into .bench/photos; docs/benchmark-photos.md has each source), LR by
Pillow's antialiased bicubic ×2 as that script makes its LR. Run from the repo root:

    python tests/data/photos/make.py
"""

from pathlib import Path

from PIL import Image

SOURCE = Path(".bench/photos")
HERE = Path(__file__).resolve().parent
# name in the benchmark set → (split here, crop centre as fractions of width/height); licence in README.md
CROPS = {
    "skimage-coffee": ("train", 0.45, 0.45), "skimage-chelsea": ("train", 0.55, 0.40),
    "skimage-astronaut": ("train", 0.40, 0.30), "mpl-grace-hopper": ("train", 0.50, 0.35),
    "lomiri-seeding": ("train", 0.50, 0.60), "scipy-face": ("train", 0.45, 0.45),
    "skimage-rocket": ("val", 0.50, 0.50), "skimage-camera": ("val", 0.45, 0.40),
}
SIZE = 96
for name, (split, fx, fy) in CROPS.items():
    path = next(p for p in SOURCE.glob(f"*/hr/{name}.png"))
    image = Image.open(path).convert("RGB")
    left = min(image.width - SIZE, max(0, round(fx * image.width) - SIZE // 2))
    top = min(image.height - SIZE, max(0, round(fy * image.height) - SIZE // 2))
    hr = image.crop((left, top, left + SIZE, top + SIZE))
    lr = hr.resize((SIZE // 2, SIZE // 2), Image.Resampling.BICUBIC, reducing_gap=None)
    for side, picture in (("hr", hr), ("lr", lr)):
        out = HERE / split / side / f"{name}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        picture.save(out, compress_level=9)
