"""Image files, for `init` and `train` alike: list, pair, read headers, decode, and the pair lists.

Torch-free at import (`autosr init` must start fast); only `load_val_pairs` imports torch, inside.
Vocabulary: GT = high-resolution (ground truth), LQ = low-resolution, as in traiNNer-redux.

Pairing — one rule for `init` and `train`
-----------------------------------------
- A file's *key* is its path relative to its folder, posix-style, without extension ("sub/0001").
  A GT and an LQ image pair when their keys are equal, **letter case included** (like
  traiNNer-redux, which pairs by exact name). Extensions may differ and match in any case
  ("a.png" pairs with "a.JPG"). Names that differ only in letter case ("Photo" / "photo") do not
  pair; every message about unpaired files says so when that is why.
- Names are matched against folder listings, never by asking the file system whether a path
  exists: a case-insensitive file system (Windows, macOS by default) would answer yes for
  "dd.png" when "Dd.png" is stored. So a pair list means the same on every file system.
- Two files of one folder whose keys differ only in case ("Dd.png", "dd.png": possible on Linux,
  not on Windows or macOS) are two keys, each pairing with its exact namesake; listings are
  sorted by key (code points), so the order is the same on every run and platform. `init` notes
  them, as such a folder cannot be copied to Windows or macOS intact, and validation output names
  are made unique ignoring case (`load_val_pairs`).
- Two files with one key ("a.png", "a.jpg") are an error: which one pairs? Hidden entries
  (".DS_Store", macOS "._x.png" forks) are skipped; image extensions are IMAGE_EXTS, any case.

Pair lists (meta_info), written by `init`, read by `train`
----------------------------------------------------------
UTF-8, one GT path per line, relative to the GT folder, '/' between folders, exactly as on disk,
each line ended by "\\n" — traiNNer-redux's format, which its loader reads as long as the name has
no space (it keeps the text before the first space; `init` notes such names). The reader returns
every name the writer wrote, unchanged (spaces, unicode, leading spaces, a leading '#'):
- a line ending in an image extension is one name, whole (trailing blanks and a "\\r" dropped:
  no name ends with them);
- otherwise, a line starting with '#' is a comment, and any other line is a name followed by a
  field that is dropped: BasicSR's shape ("0001.png (480,480,3)") or extra tokens ("0001.png 1");
- blank lines are skipped, and a UTF-8 byte-order mark is ignored.
File names with a line break cannot be listed and are refused when the folder is listed. The LQ
of a listed GT is the image with the same key under the LQ folder (any image extension); failing
that, the image with the same stem directly in the LQ folder (BasicSR's and traiNNer's layout).

Headers and decoding
--------------------
`read_header` gives the size *as decoded* (EXIF rotation applied where `load_rgb_uint8` applies
it), the mode (16-bit colour marked "RGB;16"), the EXIF orientation and the JPEG quality, from the
header alone; `load_rgb_uint8` is the one decoder. Any file that cannot be read raises
`unreadable(path, why)`.
"""

from __future__ import annotations

import errno
import functools
import io
import os
import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, NamedTuple

import numpy as np
from PIL import Image

from autosr.errors import AutosrError
from autosr.fsutil import atomic_write

if TYPE_CHECKING:
    import torch

IMAGE_EXTS = frozenset({"png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff"})  # lower case, no dot
SHOW = 3  # names shown in messages before "… and N more"

_SIXTEEN_BIT_GRAY = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
_WITH_ALPHA = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
# Formats whose EXIF orientation sits in the header: honoured there only, so that header sizes
# (read for millions of files without decoding) always equal decoded sizes. OpenCV, which
# traiNNer uses, applies the tag too; PNG's rare eXIf chunk may need a full decode to find.
_EXIF_FORMATS = frozenset({"JPEG", "MPO", "TIFF", "WEBP"})
_TRANSPOSE = {  # EXIF orientation → the transpose that shows the image upright (as ImageOps.exif_transpose)
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_SIDES = frozenset({5, 6, 7, 8})

# JPEG Annex K luminance table: the reference that IJG quality settings scale.
_JPEG_LUMA = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)  # fmt: skip

_EXT_PATTERN = "|".join(sorted(IMAGE_EXTS, key=len, reverse=True))
_ENDS_IN_IMAGE_EXT = re.compile(rf"\.(?:{_EXT_PATTERN})$", re.IGNORECASE)
_NAME_THEN_FIELD = re.compile(rf"(.*\.(?:{_EXT_PATTERN}))\s+\S.*", re.IGNORECASE | re.DOTALL)


# ─── errors and messages ──────────────────────────────────────────────────────────────────────


def unreadable(path: str | os.PathLike[str], why: BaseException | str, hint: str | None = None) -> AutosrError:
    """The one error for an image file that cannot be read (header or pixels)."""
    reason = str(why).strip().splitlines()[0] if str(why).strip() else type(why).__name__
    if isinstance(why, Image.DecompressionBombError):
        return AutosrError(f"image {path} is too large to read safely: {reason}", "cut it into tiles, or remove it")
    if isinstance(why, OSError) and why.strerror:  # the OS's words, without the path a second time
        reason = why.strerror.lower()
        hint = hint or _OS_HINTS.get(why.errno or 0)
    return AutosrError(
        f"cannot read image {path}: {reason}",
        hint or "the file is corrupt or not an image: re-save it, or remove it and its partner",
    )


_OS_HINTS = {
    errno.ENOENT: "it was moved or deleted: restore it, or run autosr init again to list the set anew",
    errno.EACCES: "check its permissions (and those of its folders): autosr only reads it",
    errno.EPERM: "check its permissions (and those of its folders): autosr only reads it",
    errno.ELOOP: "it is a symbolic link that points back to itself: fix the link, or remove it",
}


def few(names: Sequence[str], show: int = SHOW) -> str:
    """'a, b, c … and 4 more' ('none' for no names)."""
    if not names:
        return "none"
    head = ", ".join(names[:show])
    return head if len(names) <= show else f"{head} … and {len(names) - show} more"


def _duplicate(folder: str | os.PathLike[str], key: str, first: str, second: str) -> AutosrError:
    return AutosrError(
        f"two images share the name '{key}' in {folder}: {os.path.basename(first)} and {os.path.basename(second)}",
        "keep one of them (pairs are matched by file name without extension)",
    )


# ─── pairs ────────────────────────────────────────────────────────────────────────────────────


class Pair:
    """One GT/LQ pair: `key` (relative path without extension, posix-style: "sub/0001"), `gt` and
    `lq` (Paths); `gt, lq = pair` unpacks it. The paths are kept as text and made Path objects on
    access, because building 200k Path objects would cost most of a second on a 100k-pair folder."""

    __slots__ = ("key", "_gt", "_lq")

    def __init__(self, key: str, gt: str | os.PathLike[str], lq: str | os.PathLike[str]) -> None:
        self.key = key
        self._gt = os.fspath(gt)
        self._lq = os.fspath(lq)

    @property
    def gt(self) -> Path:
        return Path(self._gt)

    @property
    def lq(self) -> Path:
        return Path(self._lq)

    @property
    def gt_ext(self) -> str:
        """'.png' (as on disk)."""
        return self._gt[self._gt.rfind(".") :]  # inline: read for every pair of a 100k-pair folder

    @property
    def lq_ext(self) -> str:
        return self._lq[self._lq.rfind(".") :]

    @property
    def gt_name(self) -> str:
        """The GT file relative to the GT folder, posix-style, with extension: its meta_info line."""
        return self.key + _ext(self._gt)

    @property
    def lq_name(self) -> str:
        return self.key + _ext(self._lq)

    def __iter__(self) -> Iterator[Path]:
        yield self.gt
        yield self.lq

    def _fields(self) -> tuple[str, str, str]:
        return self.key, self._gt, self._lq

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pair) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return f"Pair({self.key!r}, {self._gt!r}, {self._lq!r})"


def _ext(path: str) -> str:
    """'.png' from '/a/b.c/x.png' (the caller knows that the name has an extension)."""
    return path[path.rfind(".") :]


@dataclass(frozen=True)
class Pairing:
    pairs: list[Pair]  # sorted by key
    unpaired_gt: list[str]  # keys, sorted
    unpaired_lq: list[str]

    def case_mismatches(self) -> list[str]:
        """Unpaired GT keys whose only partner differs in letter case ("Photo" / LQ "photo")."""
        lq = {k.lower() for k in self.unpaired_lq}
        return [k for k in self.unpaired_gt if k.lower() in lq]

    def case_clashes(self) -> list[str]:
        """Keys that differ only in letter case from another key of the same folder (either side)."""
        keys = [p.key for p in self.pairs]
        if not _case_collisions(keys + self.unpaired_gt + self.unpaired_lq):
            return []  # the usual case, in one pass (a clash across the sides is a case *mismatch*)
        clashes = _case_collisions(keys + self.unpaired_gt) + _case_collisions(keys + self.unpaired_lq)
        return sorted(set(clashes))


def _case_collisions(keys: list[str]) -> list[str]:
    """The keys that equal another one ignoring letter case (keys are unique)."""
    lowered = "\0".join(keys).lower().split("\0")  # one lower() for 100k keys: ~10× faster
    if len(set(lowered)) == len(keys):
        return []
    groups: dict[str, list[str]] = {}
    for key, low in zip(keys, lowered, strict=True):
        groups.setdefault(low, []).append(key)
    return [key for group in groups.values() if len(group) > 1 for key in group]


def list_images(folder: Path) -> dict[str, Path]:
    """Every image under `folder` (recursive), keyed by relative path without extension."""
    return {key: Path(path) for key, path in _scan(Path(folder)).items()}


def _scan(folder: Path) -> dict[str, str]:
    """list_images with the paths as text (see Pair for why); one os.scandir per folder, no stat."""
    found: dict[str, str] = {}
    visited = {os.path.realpath(folder)}
    stack = [("", os.fspath(folder))]
    while stack:
        prefix, where = stack.pop()
        try:
            with os.scandir(where) as it:
                entries = list(it)
        except OSError as exc:
            raise AutosrError(f"cannot read folder {where}: {exc.strerror or exc}", "check its permissions") from exc
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            if _is_dir(entry):  # uses d_type: no stat per entry on common file systems
                if entry.is_symlink():  # a linked folder may loop back on itself
                    real = os.path.realpath(entry.path)
                    if real in visited:
                        continue
                    visited.add(real)
                stack.append((f"{prefix}{name}/", entry.path))
                continue
            stem, dot, ext = name.rpartition(".")
            if not dot or not stem or ext.lower() not in IMAGE_EXTS:
                continue
            if "\n" in name:
                raise AutosrError(
                    f"image file name with a line break in {where}: {name!r}",
                    "rename it: pair lists (meta_info) hold one name per line",
                )
            key = prefix + stem
            if key in found:
                raise _duplicate(folder, key, found[key], name)
            found[key] = entry.path
    return found


def _is_dir(entry: os.DirEntry[str]) -> bool:
    """entry.is_dir(), with a link that loops (a → b → a) named as such instead of an OSError."""
    try:
        return entry.is_dir()
    except OSError as exc:
        raise unreadable(entry.path, exc) from None


def pair_folders(
    gt_dir: Path, lq_dir: Path, *, roles: tuple[str, str] = ("HR (--gt)", "LR (--lq)")
) -> Pairing:
    """Match GT and LQ images by key; report what is left over on each side.

    `roles` name the two folders in messages ("HR (--gt)" for init, "GT (dataroot_gt)" for train).
    """
    gt_dir, lq_dir = Path(gt_dir), Path(lq_dir)
    gt = _images_in(gt_dir, roles[0])
    lq = _images_in(lq_dir, roles[1])
    common = gt.keys() & lq.keys()
    unpaired_gt = sorted(gt.keys() - common)
    unpaired_lq = sorted(lq.keys() - common)
    if not common:
        gt_word, lq_word = (role.split()[0] for role in roles)
        raise AutosrError(
            f"no pairs: no image in {gt_dir} has a namesake in {lq_dir} "
            f"({gt_word} e.g. {few(unpaired_gt)}; {lq_word} e.g. {few(unpaired_lq)})",
            _no_pair_hint(gt.keys(), lq.keys()),
        )
    pairs = [Pair(k, gt[k], lq[k]) for k in sorted(common)]
    return Pairing(pairs, unpaired_gt, unpaired_lq)


def _images_in(folder: Path, role: str) -> dict[str, str]:
    if not folder.exists():
        raise AutosrError(f"{role} folder {folder} does not exist", "check the path")
    if not folder.is_dir():
        raise AutosrError(f"{role} path {folder} is not a folder", "pass the folder that holds the images")
    images = _scan(folder)
    if images:
        return images
    with os.scandir(folder) as it:
        empty = next(it, None) is None
    if empty:
        raise AutosrError(f"{role} folder {folder} is empty", "put the images there, or pass another folder")
    exts = ", ".join(sorted(IMAGE_EXTS))
    raise AutosrError(f"{role} folder {folder} holds no image files", f"autosr reads {exts}")


CASE_HINT = "some names differ only in letter case: rename them so that they match exactly"


def _no_pair_hint(gt: Iterable[str], lq: Iterable[str]) -> str:
    gt, lq = set(gt), set(lq)
    if {k.lower() for k in gt} & {k.lower() for k in lq}:
        return CASE_HINT
    if {k.rsplit("/", 1)[-1] for k in gt} & {k.rsplit("/", 1)[-1] for k in lq}:
        return "the names match but the sub-folders differ: use the same layout in both folders"
    return "HR and LR files pair by name: hr/0001.png ↔ lr/0001.png (drop suffixes such as 'x2')"


def complete_pairs(
    gt_dir: Path, lq_dir: Path, *, roles: tuple[str, str] = ("GT (dataroot_gt)", "LQ (dataroot_lq)")
) -> list[Pair]:
    """Every image of both folders, paired; any file without a partner is an error (train's
    folder mode: training silently on part of a folder would hide a mistake)."""
    gt_dir, lq_dir = Path(gt_dir), Path(lq_dir)
    pairing = pair_folders(gt_dir, lq_dir, roles=roles)
    if not (pairing.unpaired_gt or pairing.unpaired_lq):
        return pairing.pairs
    detail = "; ".join(
        f"{what}: {few(keys)}"
        for what, keys in (
            (f"GT without LQ in {lq_dir}", pairing.unpaired_gt),
            (f"LQ without GT in {gt_dir}", pairing.unpaired_lq),
        )
        if keys
    )
    hint = CASE_HINT if pairing.case_mismatches() else "each GT image needs an LQ image of the same name"
    raise AutosrError(
        f"GT and LQ folders do not pair by name ({detail})",
        f"{hint}; or list the pairs to use in meta_info (autosr init writes that list)",
    )


def _as_list(value: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str | os.PathLike):
        return [os.fspath(value)]
    return [os.fspath(v) for v in value]


def collect_pairs(
    dataroot_gt: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    dataroot_lq: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    meta_info: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
) -> list[Pair]:
    """All pairs of a dataset entry (train's view of a YAML dataset): dataroots pair index-wise;
    with meta_info, the pairs it lists (`pairs_from_meta_info`), else every file (`complete_pairs`)."""
    gts, lqs, metas = _as_list(dataroot_gt), _as_list(dataroot_lq), _as_list(meta_info)
    if not gts or len(gts) != len(lqs):
        raise AutosrError(
            f"dataroot_gt has {len(gts)} folders and dataroot_lq {len(lqs)}",
            "give one LQ folder per GT folder",
        )
    if metas and len(metas) != len(gts):
        raise AutosrError(f"meta_info has {len(metas)} files for {len(gts)} dataroots", "give one per dataroot")
    pairs: list[Pair] = []
    for i, (gt_root, lq_root) in enumerate(zip(gts, lqs, strict=True)):
        if metas:
            pairs += pairs_from_meta_info(metas[i], gt_root, lq_root)
        else:
            pairs += complete_pairs(Path(gt_root), Path(lq_root))
    return pairs


# ─── pair lists (meta_info) ───────────────────────────────────────────────────────────────────


def write_meta_info(pairs: Iterable[Pair], path: Path) -> Path:
    """Write a pair list: one GT path per line, relative to the GT folder (see the module notes).

    Written to a temporary file and renamed, so a crash never leaves half a list.
    """
    names = [p.gt_name for p in pairs]
    for name in names:
        if "\n" in name:
            raise AutosrError(f"cannot list {name!r}: the name holds a line break", "rename the file")
    data = "".join(f"{name}\n" for name in names).encode("utf-8", "surrogateescape")

    def write(f: BinaryIO) -> None:
        f.write(data)

    return atomic_write(Path(path), write)


def read_meta_info(path: Path) -> list[str]:
    """The GT names listed in a pair list, exactly as `write_meta_info` wrote them."""
    return [name for _, name in _meta_lines(Path(path))]


def _meta_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, name) for every line that names an image."""
    try:
        text = path.read_bytes().decode("utf-8-sig", "surrogateescape")
    except OSError as exc:
        raise AutosrError(f"cannot read meta_info file {path}: {exc.strerror or exc}", "check the path") from exc
    found = []
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.rstrip()  # "\r" of Windows line ends, trailing blanks: no name ends with them
        if not line.strip():
            continue
        if _ENDS_IN_IMAGE_EXT.search(line):
            found.append((number, line))
            continue
        if line.lstrip().startswith("#"):
            continue  # a comment
        match = _NAME_THEN_FIELD.fullmatch(line)
        if match is None:
            raise AutosrError(
                f"{path} line {number}: {line!r} does not name an image file",
                f"one GT path per line, relative to dataroot_gt, ending in .{', .'.join(sorted(IMAGE_EXTS))}",
            )
        found.append((number, match.group(1)))
    return found


class _Listings:
    """Folder listings, each read once (os.scandir): {file name: path}, and image stems."""

    def __init__(self) -> None:
        self._names: dict[str, dict[str, str]] = {}
        self._stems: dict[str, dict[str, list[str]]] = {}

    def names(self, folder: str) -> dict[str, str]:
        if folder not in self._names:
            try:
                with os.scandir(folder) as it:
                    self._names[folder] = {e.name: e.path for e in it if not e.is_dir()}
            except (FileNotFoundError, NotADirectoryError):
                self._names[folder] = {}
            except OSError as exc:
                raise AutosrError(f"cannot read folder {folder}: {exc.strerror or exc}", "check its permissions") from exc
        return self._names[folder]

    def with_stem(self, folder: str, stem: str) -> str | None:
        """The image in `folder` whose name is `stem` + an image extension (any case)."""
        if folder not in self._stems:
            stems: dict[str, list[str]] = {}
            for name, path in self.names(folder).items():
                base, dot, ext = name.rpartition(".")
                if dot and base and ext.lower() in IMAGE_EXTS:
                    stems.setdefault(base, []).append(path)
            self._stems[folder] = stems
        found = self._stems[folder].get(stem)
        if not found:
            return None
        if len(found) > 1:
            first, second = sorted(found)[:2]
            raise _duplicate(folder, stem, first, second)
        return found[0]

    def case_twin(self, folder: str, name: str, *, stem: bool = False) -> str | None:
        """A file of `folder` whose name (or stem) equals `name` ignoring letter case only."""
        low = name.lower()
        for other in sorted(self.names(folder)):
            candidate = other.rpartition(".")[0] if stem else other
            if candidate.lower() == low and candidate != name:
                return other
        return None


def pairs_from_meta_info(meta_path: str | os.PathLike[str], gt_root: str | os.PathLike[str],
                         lq_root: str | os.PathLike[str]) -> list[Pair]:
    """The pairs a pair list names (see the module notes for how each LQ is found)."""
    meta_path, gt_root, lq_root = Path(meta_path), os.fspath(gt_root), os.fspath(lq_root)
    lines = _meta_lines(meta_path)
    if not lines:
        raise AutosrError(f"meta_info {meta_path} lists no images", "one GT path per line, relative to dataroot_gt")
    listings = _Listings()
    pairs: list[Pair] = []
    for number, rel in lines:
        if os.sep != "/":
            rel = rel.replace(os.sep, "/")
        head, _, name = rel.rpartition("/")
        if os.path.isabs(rel):
            gt_dir, lq_dirs = head, [lq_root]
        else:
            parts = head.split("/") if head else []
            gt_dir = os.path.join(gt_root, *parts)
            lq_dirs = [os.path.join(lq_root, *parts)] + ([lq_root] if parts else [])
        where = f"{meta_path} line {number}"
        gt = listings.names(gt_dir).get(name)
        if gt is None:
            twin = listings.case_twin(gt_dir, name)
            raise AutosrError(
                f"{where}: GT {os.path.join(gt_dir, name)} does not exist",
                f"{twin} differs only in letter case: {CASE_HINT}" if twin
                else "fix the list, or run autosr init again to rewrite it",
            )
        stem = name.rpartition(".")[0]
        lq = next((found for folder in lq_dirs if (found := listings.with_stem(folder, stem))), None)
        if lq is None:
            twin = listings.case_twin(lq_dirs[0], stem, stem=True)
            raise AutosrError(
                f"{where}: no LQ image named {stem}.<ext> for {rel} in {lq_dirs[0]}",
                f"{twin} differs only in letter case: {CASE_HINT}" if twin else "add the LQ file, or remove the line",
            )
        pairs.append(Pair(rel.rpartition(".")[0], gt, lq))
    return pairs


# ─── headers ──────────────────────────────────────────────────────────────────────────────────


class Header(NamedTuple):
    """What an image header tells, without decoding pixels."""

    size: tuple[int, int]  # (width, height) as load_rgb_uint8 decodes it: EXIF rotation applied
    mode: str  # PIL mode; "RGB;16"/"RGBA;16" for 16-bit colour (Pillow reads it as 8-bit RGB)
    orientation: int  # EXIF orientation in the header, 1 when none (applied for JPEG/MPO/TIFF/WebP)
    jpeg_quality: int | None  # approximate IJG quality of a JPEG, from its quantisation table

    @property
    def rotated(self) -> bool:
        return self.orientation != 1


def read_header(path: str | os.PathLike[str]) -> Header:
    """Size as decoded, mode, EXIF orientation and JPEG quality, from the header alone."""
    try:
        with Image.open(path) as im:
            width, height = im.size
            mode = im.mode
            if mode in ("RGB", "RGBA") and ";16" in _rawmode(im):
                mode += ";16"  # Pillow reads 16-bit colour PNG/TIFF as 8-bit RGB: keep the fact
            orientation, applied = _orientation(im)
            quality = _jpeg_quality(im) if im.format == "JPEG" else None
    except (AutosrError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - a broken file can raise almost anything inside PIL
        raise unreadable(path, exc) from exc
    if width < 1 or height < 1:
        raise unreadable(path, f"size {width}×{height}")
    if applied in _SWAPS_SIDES:
        width, height = height, width
    return Header((width, height), mode, orientation, quality)


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(width, height) as decoded: `read_header(path).size`."""
    return read_header(path).size


def _orientation(im: Image.Image) -> tuple[int, int]:
    """(the EXIF orientation in the header, the one autosr applies after Pillow's load), for a
    file just opened. Applied: the tag of the header-EXIF formats, unless Pillow applies it itself
    (TIFF in recent Pillow: its size is then upright already); a PNG's eXIf tag is only noted."""
    if im.format not in _EXIF_FORMATS and "exif" not in im.info:
        return 1, 1
    try:
        tag = int(im.getexif().get(0x0112, 1) or 1)
    except Exception:  # noqa: BLE001 - a corrupt EXIF block: read the pixels as stored
        return 1, 1
    tag = tag if tag in _TRANSPOSE else 1
    if im.format not in _EXIF_FORMATS or (im.format == "TIFF" and _pillow_rotates_tiff()):
        return tag, 1
    return tag, tag


@functools.cache
def _pillow_rotates_tiff() -> bool:
    """Whether this Pillow applies a TIFF's orientation while loading (11.2 and later do)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    try:
        Image.new("L", (2, 1)).save(buf, format="TIFF", exif=exif)
        with Image.open(buf) as im:
            return im.size == (1, 2)
    except Exception:  # noqa: BLE001 - no TIFF support at all: nothing to apply either way
        return False


def _rawmode(im: Image.Image) -> str:
    tile = getattr(im, "tile", None)  # ImageFile's decoder list: the raw mode of the stored pixels
    if not tile:
        return ""
    args = tile[0][3]
    return str(args[0] if isinstance(args, tuple) and args else args)


def _jpeg_quality(im: Image.Image) -> int | None:
    """Approximate IJG quality (1–100) from the luminance quantisation table in the header."""
    tables = getattr(im, "quantization", None) or {}
    luma = tables.get(0)
    if not luma or len(luma) != 64:
        return None
    scale = 100.0 * sum(luma) / sum(_JPEG_LUMA)  # IJG: table = reference × scale / 100
    quality = (200.0 - scale) / 2.0 if scale <= 100 else 5000.0 / scale
    return int(round(min(100.0, max(1.0, quality))))


@contextmanager
def quiet() -> Iterator[None]:
    """Silence PIL's warnings (large image, palette transparency, odd EXIF): nothing a user can act
    on while planning. Changes the process's warning filters: single-threaded callers only."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# ─── decoding ─────────────────────────────────────────────────────────────────────────────────


def load_rgb_uint8(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an image file to a contiguous, writable H×W×3 uint8 array, EXIF rotation applied as
    `read_header` reports it. Every loader in autosr goes through here, so the cache, the worker
    loader, validation and init's statistics see identical pixels for the same file."""
    try:
        with Image.open(path) as img:
            method = _TRANSPOSE.get(_orientation(img)[1])  # read before load(), as read_header does
            img.load()
            arr = _to_rgb(img.transpose(method) if method is not None else img, path)
    except (AutosrError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - truncated or broken pixel data surfaces here
        raise unreadable(path, exc) from exc
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    # Pillow's arrays are read-only views of bytes; a writable copy costs ~1% of the decode.
    return arr if arr.flags.writeable else arr.copy()


def _to_rgb(img: Image.Image, path: str | os.PathLike[str]) -> np.ndarray:
    mode = img.mode
    if mode in _SIXTEEN_BIT_GRAY:
        # 16-bit gray (and "I", which older Pillow uses for it): scale 0..65535 to 0..255, rounded,
        # so that 8-bit data stored as 16-bit (v * 257) comes back exactly.
        wide = np.clip(np.asarray(img).astype(np.int64), 0, 65535)
        gray = ((wide + 128) // 257).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "F":
        raise unreadable(path, "32-bit float pixels are not supported", "save it as 8- or 16-bit PNG")
    if mode in _WITH_ALPHA or (mode == "P" and "transparency" in img.info):
        # Alpha is dropped, not composited: the stored colours are what the degradation saw,
        # and compositing would change LQ and GT differently where their alphas differ.
        return np.ascontiguousarray(np.asarray(img.convert("RGBA"))[..., :3])
    if mode != "RGB":  # L, 1, P, CMYK, YCbCr, LAB, HSV; 48-bit PNG already opens as 8-bit RGB
        img = img.convert("RGB")
    return np.asarray(img)


# ─── pair geometry and validation images ──────────────────────────────────────────────────────


def usable_lq_size(gt_wh: tuple[int, int], lq_wh: tuple[int, int], scale: int) -> tuple[int, int]:
    """(width, height) of the LQ area whose ×scale region lies inside the GT image."""
    return min(lq_wh[0], gt_wh[0] // scale), min(lq_wh[1], gt_wh[1] // scale)


def check_pair(
    pair: Pair | tuple[Path, Path], gt_wh: tuple[int, int], lq_wh: tuple[int, int], scale: int, lq_size: int
) -> None:
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


def _unique_names(paths: Iterable[Path]) -> list[str]:
    """File stems, made unique ignoring letter case ("a", "A_2", "a_3"): they name output folders,
    which must not collide on a case-insensitive file system."""
    names: list[str] = []
    taken: set[str] = set()
    for path in paths:
        name, n = path.stem, 1
        while name.lower() in taken:
            n += 1
            name = f"{path.stem}_{n}"
        taken.add(name.lower())
        names.append(name)
    return names


def load_val_pairs(
    pairs: Sequence[Pair] | Sequence[tuple[Path, Path]], scale: int | None = None
) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """Whole validation images as (name, lq, gt): contiguous CHW uint8 tensors, names unique.

    With `scale`, each pair is checked like training pairs and trimmed so that GT = LQ × scale
    exactly (the ±scale px slack is cut off the bottom/right), ready for pixel metrics.
    """
    import torch  # kept local: this module is imported by commands that must start fast

    paths = [tuple(pair) for pair in pairs]
    out = []
    for name, (gt_path, lq_path) in zip(_unique_names(Path(gt) for gt, _ in paths), paths, strict=True):
        lq, gt = load_rgb_uint8(lq_path), load_rgb_uint8(gt_path)
        if scale is not None:
            gt_wh, lq_wh = (gt.shape[1], gt.shape[0]), (lq.shape[1], lq.shape[0])
            check_pair((Path(gt_path), Path(lq_path)), gt_wh, lq_wh, scale, 1)
            width, height = usable_lq_size(gt_wh, lq_wh, scale)
            lq, gt = lq[:height, :width], gt[: height * scale, : width * scale]
        chw = [torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).contiguous() for a in (lq, gt)]
        out.append((name, chw[0], chw[1]))
    return out
