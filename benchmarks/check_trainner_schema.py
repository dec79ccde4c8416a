"""Do the YAMLs that `autosr init` writes load under traiNNer-redux's real schemas? (issue 13)

Renders, with autosr's own planner, the config of every preset (nano…xl) in both flavours for a
few fake machines, and loads each one with `msgspec.convert(yaml.safe_load(text), ReduxOptions)`
of the real `traiNNer/utils/redux_options.py`: the fork flavour under the ParagonSR2 fork
(delafer/traiNNer-redux), the upstream flavour under upstream (the-database/traiNNer-redux).
Each flavour is also loaded under the other schema, for information only.

The real files are read, never copied: give their paths, or a folder of bare git mirrors
(`<root>/the-database+traiNNer-redux/repo`, `<root>/delafer+traiNNer-redux/repo`) to extract them from.

    .venv/bin/pip install msgspec      # for this script only, not an autosr dependency
    .venv/bin/python benchmarks/check_trainner_schema.py --mirror-root /work/.mirror
    .venv/bin/python benchmarks/check_trainner_schema.py --upstream up/redux_options.py --fork fork/redux_options.py
    .venv/bin/python benchmarks/check_trainner_schema.py --mirror-root /work/.mirror --dump-keys   # the real key trees

Exit status 0 only if every rendered file loads under its own flavour's schema.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import re
import subprocess
import sys
import tempfile
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from autosr.hardware import fake_profile  # noqa: E402
from autosr.plan.dataset import analyse  # noqa: E402
from autosr.plan.planner import ValData, make_plan  # noqa: E402
from autosr.plan.presets import ARCH_PREFIX, VARIANTS  # noqa: E402
from autosr.plan.render import render  # noqa: E402
from autosr.synthetic import write_pairs  # noqa: E402

MIRRORS = {"upstream": "the-database+traiNNer-redux", "fork": "delafer+traiNNer-redux"}
OPTIONS = "traiNNer/utils/redux_options.py"
TYPES = "traiNNer/utils/types.py"
MACHINES = {
    "rtx3070-8g": (("NVIDIA GeForce RTX 3070", 8.0, "8.6"),),
    "h200-140g": (("NVIDIA H200", 140.0, "9.0"),),
    "cpu": (),
}


@dataclass
class Schema:
    flavor: str
    path: Path
    module: types.ModuleType
    commit: str | None = None


# ---- loading the real schema files ------------------------------------------------------------


def _pixel_format(types_file: Path | None) -> Any:
    """`PixelFormat` from traiNNer/utils/types.py, without importing that file (it needs torch)."""
    if types_file is not None and types_file.is_file():
        m = re.search(r"^PixelFormat\s*=\s*(Literal\[[^\]]*\])", types_file.read_text(), re.M)
        if m:
            return eval(m.group(1), {"Literal": typing.Literal})  # a Literal of string constants only
    return str  # unknown: accept any string (looser than the real schema)


def load_schema(flavor: str, path: Path, types_file: Path | None, commit: str | None = None) -> Schema:
    """Import one redux_options.py in isolation, with a stand-in for its only traiNNer import."""
    import msgspec  # noqa: F401  (a clear error early if it is missing)
    import msgspec.yaml  # noqa: F401

    stub_pkg = [types.ModuleType(n) for n in ("traiNNer", "traiNNer.utils")]
    stub = types.ModuleType("traiNNer.utils.types")
    stub.PixelFormat = _pixel_format(types_file)  # type: ignore[attr-defined]
    saved = {m.__name__: sys.modules.get(m.__name__) for m in (*stub_pkg, stub)}
    sys.modules.update({m.__name__: m for m in (*stub_pkg, stub)})
    try:
        name = f"_redux_options_{flavor}"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    finally:
        for key, old in saved.items():
            if old is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = old
    return Schema(flavor, path, module, commit)


def from_mirror(root: Path, flavor: str, tmp: Path) -> Schema:
    repo = root / MIRRORS[flavor] / "repo"
    git = ["git", "-C", str(repo)]
    commit = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    out = tmp / flavor
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for rel in (OPTIONS, TYPES):
        res = subprocess.run([*git, "show", f"HEAD:{rel}"], capture_output=True, text=True)
        if res.returncode == 0:
            files[rel] = out / Path(rel).name
            files[rel].write_text(res.stdout)
        elif rel == OPTIONS:
            raise SystemExit(f"{repo}: cannot read {rel}: {res.stderr.strip()}")
    return load_schema(flavor, files[OPTIONS], files.get(TYPES), commit)


def from_path(path: Path, flavor: str) -> Schema:
    sibling = path.with_name("types.py")
    return load_schema(flavor, path, sibling if sibling.is_file() else None)


# ---- rendering autosr's configs -------------------------------------------------------------------


def rendered(tmp: Path) -> Iterator[tuple[str, str, str]]:
    """(label, flavour, YAML text) for every machine × preset × flavour."""
    root = tmp / "data"
    gt, lq = write_pairs(root, 12, scale=2, size=(96, 80))
    ds = analyse(gt, lq)
    train_meta, val_meta = root / "train_meta.txt", root / "val_meta.txt"
    holdout = ValData("holdout", str(gt), str(lq), 2, meta_info=str(val_meta), train_meta_info=str(train_meta),
                      note="2 pairs held out")
    for machine, gpus in MACHINES.items():
        hw = fake_profile(gpus)
        for variant in VARIANTS:
            for flavor in ("fork", "upstream"):
                plan = make_plan(hw, ds, arch=ARCH_PREFIX + variant, val=holdout, flavor=flavor)
                yield f"{machine}/{variant}/{flavor}", flavor, render(plan)
    # The defaults path as well: autosr's own pick of preset, validation from separate folders.
    for flavor in ("fork", "upstream"):
        folders = ValData("folders", str(gt), str(lq), 12)
        plan = make_plan(fake_profile(), ds, arch=None, val=folders, flavor=flavor)
        yield f"rtx3070-8g/auto-arch+val-folders/{flavor}", flavor, render(plan)


def try_load(schema: Schema, text: str) -> str | None:
    """None if the text loads, else the msgspec error. Both the brief's way (PyYAML, then
    msgspec.convert) and traiNNer's own (traiNNer/utils/options.py yaml_load:
    msgspec.yaml.decode(contents, type=ReduxOptions, strict=True)) must accept it."""
    import msgspec

    errors = []
    for how, load in (
        ("convert", lambda: msgspec.convert(yaml.safe_load(text), schema.module.ReduxOptions)),
        ("yaml.decode strict", lambda: msgspec.yaml.decode(text, type=schema.module.ReduxOptions, strict=True)),
    ):
        try:
            load()
        except msgspec.ValidationError as exc:
            errors.append(f"{exc} [{how}]")
    if len(errors) == 2 and errors[0].rsplit(" [", 1)[0] == errors[1].rsplit(" [", 1)[0]:
        return errors[0].rsplit(" [", 1)[0]
    return "; ".join(errors) or None


# ---- the real key trees (for docs/trainner-schema.md) -------------------------------------------


def _type_text(tp: Any) -> str:
    text = repr(tp).replace("typing.", "").replace("NoneType", "None")
    text = re.sub(r"<class '([\w.]+)'>", lambda m: m.group(1).rsplit(".", 1)[-1], text)
    return re.sub(r"_redux_options_\w+\.", "", text)


def dump_keys(schema: Schema) -> None:
    import msgspec

    seen: set[str] = set()

    def walk(cls: Any) -> None:
        if cls.__name__ in seen:
            return
        seen.add(cls.__name__)
        info = msgspec.inspect.type_info(cls)
        print(f"\n[{schema.flavor}] {cls.__name__}")
        nested = []
        for f in info.fields:
            if f.required:
                default = "REQUIRED"
            elif f.default is not msgspec.NODEFAULT:
                default = repr(f.default)
            else:
                default = f"factory {f.default_factory.__name__}" if f.default_factory is not msgspec.NODEFAULT else "?"
                with contextlib.suppress(Exception):
                    default = repr(f.default_factory())
            hint = typing.get_type_hints(cls)[f.name]
            print(f"  {f.name} | {_type_text(hint)} | {default}")
            for arg in _struct_args(hint):
                nested.append(arg)
        for arg in nested:
            walk(arg)

    walk(schema.module.ReduxOptions)


def _struct_args(tp: Any) -> Iterator[Any]:
    import msgspec

    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        yield tp
    for arg in typing.get_args(tp):
        yield from _struct_args(arg)


# ---- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", type=Path, help="the-database/traiNNer-redux traiNNer/utils/redux_options.py")
    parser.add_argument("--fork", type=Path, help="delafer/traiNNer-redux (ParagonSR2 fork) traiNNer/utils/redux_options.py")
    parser.add_argument("--mirror-root", type=Path, help="folder holding <owner>+traiNNer-redux/repo bare mirrors")
    parser.add_argument("--keep", type=Path, help="also write every rendered YAML into this folder")
    parser.add_argument("--dump-keys", action="store_true", help="print both real key trees (field | type | default) and exit")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="autosr-schema-") as tmp_name:
        tmp = Path(tmp_name)
        schemas: dict[str, Schema] = {}
        for flavor in ("upstream", "fork"):
            given = getattr(args, flavor)
            if given is not None:
                schemas[flavor] = from_path(given, flavor)
            elif args.mirror_root is not None:
                schemas[flavor] = from_mirror(args.mirror_root, flavor, tmp)
            else:
                parser.error(f"give --{flavor} PATH or --mirror-root DIR")
        for s in schemas.values():
            print(f"{s.flavor:8} schema: {s.path}" + (f" (commit {s.commit})" if s.commit else ""))
        if args.dump_keys:
            for s in schemas.values():
                dump_keys(s)
            return 0

        failures, total, cross = [], 0, {"fork": [0, 0], "upstream": [0, 0]}
        print(f"\n{'file':42} {'own schema':12} other schema (informative)")
        for label, flavor, text in rendered(tmp):
            if args.keep:
                out = args.keep / (label.replace("/", "_") + ".yml")
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(text)
            other = "upstream" if flavor == "fork" else "fork"
            own_err, other_err = try_load(schemas[flavor], text), try_load(schemas[other], text)
            total += 1
            cross[flavor][0] += other_err is None
            cross[flavor][1] += 1
            if own_err:
                failures.append((label, own_err))
            own = "loads" if own_err is None else "FAILS"
            print(f"{label:42} {own:12} {other}: {'loads' if other_err is None else other_err}")
            if own_err:
                print(f"{'':42} ^ {flavor}: {own_err}")

        print(f"\n{total - len(failures)}/{total} rendered files load under their own flavour's real schema")
        for flavor, (ok, n) in cross.items():
            print(f"  informative: {ok}/{n} {flavor}-flavour files also load under the other schema")
        for label, err in failures:
            print(f"FAIL {label}: {err}")
        return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
