"""Image files for training: decode to RGB uint8, read sizes from headers, find and check pairs.

Every loader in autosr goes through `load_rgb_uint8`, so the cache, the worker loader and
validation see identical pixels for the same file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps

from autosr.errors import AutosrError

if TYPE_CHECKING:
    import torch

IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
_SIXTEEN_BIT = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
_WITH_ALPHA = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
# Formats whose EXIF orientation sits in the header: honoured there only, so that header sizes
# (read for millions of files without decoding) always equal decoded sizes. OpenCV, which
# traiNNer uses, applies the tag too; PNG's rare eXIf chunk would need a full decode to find.
_EXIF_FORMATS = frozenset({"JPEG", "MPO", "TIFF", "WEBP"})
_TRANSPOSING = frozenset({5, 6, 7, 8})

Pair = tuple[Path, Path]  # (gt, lq)


def _unreadable(path: Path, exc: BaseException) -> AutosrError:
    return AutosrError(f"cannot read image {path}: {exc}", "re-save the file or remove it from the dataset")


def _orientation(img: Image.Image) -> int:
    if img.format not in _EXIF_FORMATS:
        return 1
    return int(img.getexif().get(0x0112, 1) or 1)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) as decoded, read from the header only."""
    try:
        with Image.open(path) as img:
            width, height = img.size
            if _orientation(img) in _TRANSPOSING:
                width, height = height, width
            return width, height
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise _unreadable(path, exc) from exc


def _to_rgb(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in _SIXTEEN_BIT:
        # 16-bit gray (and "I", which older Pillow uses for it): scale 0..65535 to 0..255, rounded,
        # so that 8-bit data stored as 16-bit (v * 257) comes back exactly.
        wide = np.clip(np.asarray(img).astype(np.int64), 0, 65535)
        gray = ((wide + 128) // 257).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "F":
        raise AutosrError(
            f"{img.filename}: 32-bit float images are not supported", "save it as 8- or 16-bit PNG"
        )
    if mode in _WITH_ALPHA or (mode == "P" and "transparency" in img.info):
        # Alpha is dropped, not composited: the stored colours are what the degradation saw,
        # and compositing would change LQ and GT differently where their alphas differ.
        return np.ascontiguousarray(np.asarray(img.convert("RGBA"))[..., :3])
    if mode != "RGB":  # L, 1, P, CMYK, YCbCr, LAB, HSV; 48-bit PNG already opens as 8-bit RGB
        img = img.convert("RGB")
    return np.asarray(img)


def load_rgb_uint8(path: str | Path) -> np.ndarray:
    """Decode an image file to a contiguous H×W×3 uint8 array; AutosrError naming it if unreadable."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            if _orientation(img) != 1:
                img = ImageOps.exif_transpose(img)
            arr = _to_rgb(img)
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise _unreadable(path, exc) from exc
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    # Pillow's arrays are read-only views of bytes; a writable copy costs ~1% of the decode.
    return arr if arr.flags.writeable else arr.copy()


def usable_lq_size(gt_wh: tuple[int, int], lq_wh: tuple[int, int], scale: int) -> tuple[int, int]:
    """(width, height) of the LQ area whose ×scale region lies inside the GT image."""
    return min(lq_wh[0], gt_wh[0] // scale), min(lq_wh[1], gt_wh[1] // scale)


def check_pair(pair: Pair, gt_wh: tuple[int, int], lq_wh: tuple[int, int], scale: int, lq_size: int) -> None:
    """Raise AutosrError when LQ×scale is off the GT size by more than `scale` px, or too small to crop."""
    gt, lq = pair
    if any(abs(q * scale - g) > scale for q, g in zip(lq_wh, gt_wh, strict=True)):
        raise AutosrError(
            f"pair does not match at scale {scale}: GT {gt} is {gt_wh[0]}×{gt_wh[1]}, "
            f"LQ {lq} is {lq_wh[0]}×{lq_wh[1]} (×{scale} = {lq_wh[0] * scale}×{lq_wh[1] * scale})",
            "check the scale, or regenerate the LQ image from this GT",
        )
    width, height = usable_lq_size(gt_wh, lq_wh, scale)
    if min(width, height) < lq_size:
        raise AutosrError(
            f"image {lq} ({width}×{height} usable LQ pixels) is smaller than lq_size {lq_size}",
            f"lower lq_size to at most {min(width, height)}, or remove this pair",
        )


def _is_image(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTS


def _index_folder(root: Path) -> dict[str, Path]:
    """Map 'relative/stem' (lower case, extension dropped) to the file, for every image under root."""
    if not root.is_dir():
        raise AutosrError(f"dataset folder {root} does not exist", "check dataroot_gt / dataroot_lq")
    found: dict[str, Path] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if not _is_image(name):
                continue
            path = Path(folder, name)
            key = path.relative_to(root).with_suffix("").as_posix().lower()
            if key in found:
                raise AutosrError(f"two images share the name {key!r}: {found[key]} and {path}", "keep one")
            found[key] = path
    return found


def _pair_folders(gt_root: Path, lq_root: Path) -> list[Pair]:
    gts, lqs = _index_folder(gt_root), _index_folder(lq_root)
    missing, extra = sorted(gts.keys() - lqs.keys()), sorted(lqs.keys() - gts.keys())
    if missing or extra:
        detail = "; ".join(
            f"{what}: {', '.join(keys[:3])}{' …' if len(keys) > 3 else ''}"
            for what, keys in (
                (f"GT without LQ in {lq_root}", missing),
                (f"LQ without GT in {gt_root}", extra),
            )
            if keys
        )
        raise AutosrError(
            f"GT and LQ folders do not pair by name ({detail})", "each GT needs an LQ of the same name"
        )
    if not gts:
        raise AutosrError(f"no images found in {gt_root}", f"supported: {', '.join(sorted(IMAGE_EXTS))}")
    return [(gts[key], lqs[key]) for key in sorted(gts)]


def read_meta_info(meta_path: str | Path, gt_root: str | Path, lq_root: str | Path) -> list[Pair]:
    """Pairs listed in a meta_info file: one GT path (relative to gt_root) per line, first token.

    The LQ is the image under lq_root with the same relative stem and any image extension
    (case-insensitive); basicsr's layout, the bare file name directly under lq_root, also works.
    """
    meta_path, gt_root, lq_root = Path(meta_path), Path(gt_root), Path(lq_root)
    try:
        lines = meta_path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise AutosrError(f"cannot read meta_info {meta_path}: {exc}", "check the meta_info path") from exc
    listings: dict[Path, dict[str, Path]] = {}  # folder → {lower stem: file}, listed once per folder

    def find_lq(folder: Path, stem: str) -> Path | None:
        if folder not in listings:
            names = os.listdir(folder) if folder.is_dir() else []
            listings[folder] = {os.path.splitext(n)[0].lower(): folder / n for n in names if _is_image(n)}
        return listings[folder].get(stem.lower())

    pairs: list[Pair] = []
    for number, line in enumerate(lines, 1):
        tokens = line.split()
        if not tokens or tokens[0].startswith("#"):
            continue
        rel = Path(tokens[0])
        gt = gt_root / rel
        if not gt.is_file():
            raise AutosrError(f"{meta_path} line {number}: GT {gt} does not exist", "fix the meta_info file")
        lq = find_lq((lq_root / rel).parent, rel.stem) or find_lq(lq_root, rel.stem)
        if lq is None:
            raise AutosrError(
                f"{meta_path} line {number}: no LQ image for {rel} under {lq_root}", "add the LQ file"
            )
        pairs.append((gt, lq))
    if not pairs:
        raise AutosrError(f"meta_info {meta_path} lists no images", "one GT path per line")
    return pairs


def _as_list(value: str | Path | Sequence[str | Path] | None) -> list[str | Path]:
    if value is None:
        return []
    return [value] if isinstance(value, str | Path) else list(value)


def collect_pairs(
    dataroot_gt: str | Sequence[str],
    dataroot_lq: str | Sequence[str],
    meta_info: str | Sequence[str] | None = None,
) -> list[Pair]:
    """All (gt, lq) pairs of a dataset entry: dataroots pair index-wise; files pair by relative stem."""
    gts, lqs, metas = _as_list(dataroot_gt), _as_list(dataroot_lq), _as_list(meta_info)
    if not gts or len(gts) != len(lqs):
        raise AutosrError(
            f"dataroot_gt has {len(gts)} folders and dataroot_lq {len(lqs)}",
            "give one LQ folder per GT folder",
        )
    if metas and len(metas) != len(gts):
        raise AutosrError(
            f"meta_info has {len(metas)} files for {len(gts)} dataroots", "give one per dataroot"
        )
    pairs: list[Pair] = []
    for i, (gt_root, lq_root) in enumerate(zip(gts, lqs, strict=True)):
        if metas:
            pairs += read_meta_info(metas[i], gt_root, lq_root)
        else:
            pairs += _pair_folders(Path(gt_root), Path(lq_root))
    return pairs


def _unique_names(paths: Iterable[Path]) -> list[str]:
    names: list[str] = []
    seen: dict[str, int] = {}
    for path in paths:
        seen[path.stem] = seen.get(path.stem, 0) + 1
        names.append(path.stem if seen[path.stem] == 1 else f"{path.stem}_{seen[path.stem]}")
    return names


def load_val_pairs(
    pairs: Sequence[Pair], scale: int | None = None
) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """Whole validation images as (name, lq, gt): contiguous CHW uint8 tensors, names unique.

    With `scale`, each pair is checked like training pairs and trimmed so that GT = LQ × scale
    exactly (the ±scale px slack is cut off the bottom/right), ready for pixel metrics.
    """
    import torch  # kept local: this module is imported by commands that must start fast

    out = []
    for name, (gt_path, lq_path) in zip(_unique_names(gt for gt, _ in pairs), pairs, strict=True):
        lq, gt = load_rgb_uint8(lq_path), load_rgb_uint8(gt_path)
        if scale is not None:
            gt_wh, lq_wh = (gt.shape[1], gt.shape[0]), (lq.shape[1], lq.shape[0])
            check_pair((gt_path, lq_path), gt_wh, lq_wh, scale, 1)
            width, height = usable_lq_size(gt_wh, lq_wh, scale)
            lq, gt = lq[:height, :width], gt[: height * scale, : width * scale]
        chw = [torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).contiguous() for a in (lq, gt)]
        out.append((name, chw[0], chw[1]))
    return out
