"""YAML → RunConfig: strict, typed, with did-you-mean errors; and `--set key=value` overrides.

The checks mirror traiNNer-redux's msgspec loading (unknown keys and wrong types fail) so that
a file autosr accepts also loads there, then add the semantic rules traiNNer checks later
(exactly one patch size, val_freq with a val set…). Errors name the file and the key.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from autosr.errors import AutosrError, did_you_mean
from autosr.fork_keys import AUTOMATIONS_SECTION, all_spellings, canonical_automation
from autosr.schema import FORK_SECTIONS, ROOT, Either, FreeMap, ListOf, MapOf, Scalar, Struct

_TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "text"}


def _describe(value: Any) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {value!r}"


def _check_scalar(value: Any, spec: Scalar, where: str) -> Any:
    if value is None:
        if spec.nullable:
            return None
        raise AutosrError(f"{where}: expected {_TYPE_WORDS[spec.kind]}, got nothing", "give it a value or remove the key")
    ok = isinstance(value, spec.kind) and not (spec.kind is int and isinstance(value, bool))
    if spec.kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        hint = f"write {_TYPE_WORDS[spec.kind]}"
        if spec.kind is float and isinstance(value, str) and _looks_numeric(value):
            hint = f"write it as {float(value):.1e} (YAML reads '{value}' as text)"
        raise AutosrError(f"{where}: expected {_TYPE_WORDS[spec.kind]}, got {_describe(value)}", hint)
    if spec.choices and value not in spec.choices:
        raise AutosrError(
            f"{where}: '{value}' is not allowed{did_you_mean(str(value), spec.choices)}",
            "choose one of " + ", ".join(spec.choices),
        )
    if spec.kind in (int, float):
        _check_number(value, spec, where)
    return value


def _check_number(value: float, spec: Scalar, where: str) -> None:
    """Every float finite; every ranged number inside its range. One line: key, value, range."""
    allowed = f"allowed: {spec.range_text()}"
    if isinstance(value, float) and not math.isfinite(value):
        raise AutosrError(f"{where}: {value} is not a finite number", allowed)
    if not spec.in_range(value):
        raise AutosrError(f"{where}: {value} is out of range", allowed)


def _check_finite_tree(value: Any, where: str) -> None:
    """Free mappings (network_g, losses) are checked by their owner, but no float in them may be nan/inf."""
    if isinstance(value, float) and not math.isfinite(value):
        raise AutosrError(f"{where}: {value} is not a finite number", "allowed: any finite number")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_finite_tree(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_finite_tree(item, f"{where}[{i}]")


def _fork_number(value: Any, spec: Any) -> Any:
    """In the fork's free-form sections a number may be written as text ('1e-6': YAML reads it as a
    string), and a count as a whole float (100.0); the fork converts with float()/int(float()), so
    autosr reads it as that number. A fraction where a count is due stays an error (int() would cut it)."""
    if not (isinstance(spec, Scalar) and spec.kind in (int, float)) or isinstance(value, bool):
        return value
    if isinstance(value, str) and _looks_numeric(value):
        value = float(value)
        return int(value) if spec.kind is int and value.is_integer() else value
    if spec.kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _looks_numeric(text: str, *, finite: bool = True) -> bool:
    try:
        return math.isfinite(float(text)) or not finite
    except ValueError:
        return False


def check(value: Any, spec: Any, where: str) -> Any:
    """Validate `value` against `spec`; return it normalised (ints where floats are due become floats)."""
    if isinstance(spec, Scalar):
        return _check_scalar(value, spec, where)
    if isinstance(spec, Either):
        errors = []
        for option in spec.options:
            try:
                return check(value, option, where)
            except AutosrError as exc:
                errors.append(exc)
        raise errors[-1]
    if isinstance(spec, ListOf):
        if not isinstance(value, list):
            raise AutosrError(f"{where}: expected a list, got {_describe(value)}", "write it as [a, b, …]")
        if len(value) < spec.min_len:
            raise AutosrError(f"{where}: needs at least {spec.min_len} item(s)", "add the missing entries")
        return [check(item, spec.item, f"{where}[{i}]") for i, item in enumerate(value)]
    if not isinstance(value, dict):
        raise AutosrError(f"{where}: expected a mapping of keys, got {_describe(value)}", "indent its keys below it")
    if isinstance(spec, FreeMap):
        for key in spec.required:
            if key not in value:
                raise AutosrError(f"{where}: '{key}' is required", f"add {where}.{key}")
        _check_finite_tree(value, where)
        return dict(value)
    if isinstance(spec, MapOf):
        out = {}
        for key, item in value.items():
            item_spec = spec.spec_for(str(key))
            if item_spec is None:
                prefixes = [p for p, _ in spec.by_prefix]
                raise AutosrError(
                    f"{where}: unknown key '{key}'{did_you_mean(str(key), prefixes)}",
                    "keys must start with " + " or ".join(prefixes),
                )
            out[key] = check(item, item_spec, f"{where}.{key}")
        return out
    assert isinstance(spec, Struct)
    out = {}
    for key, item in value.items():
        if key not in spec.keys:
            raise AutosrError(f"{where}: unknown key '{key}'{did_you_mean(str(key), spec.keys)}", _unknown_hint(spec.fork_free_form))
        if spec.fork_free_form:
            item = _fork_number(item, spec.keys[key])
        out[key] = check(item, spec.keys[key], f"{where}.{key}" if where else key)
    for key in spec.required:
        if key not in out:
            raise AutosrError(f"{where or 'top level'}: '{key}' is required", f"add {key}")
    return out


def _unknown_hint(fork_free_form: bool) -> str:
    why = ("the fork ignores unknown keys in this section, autosr refuses them so that a typo is not lost"
           if fork_free_form else "traiNNer-redux rejects unknown keys too")
    return f"remove it or fix its spelling ({why})"


# ---- the fork's spellings ---------------------------------------------------------------------

_AUTOMATIONS_WHERE = f"train.{AUTOMATIONS_SECTION}"


def _fork_names(tree: dict[str, Any]) -> dict[str, Any]:
    """`train.training_automations` as autosr reads it: each automation under autosr's name, however the
    fork spells it (autosr/fork_keys.py: class names, snake_case aliases, any case), and the early-stop
    metric without the fork's `val/` prefix (its default 'val/psnr' is the validation metric 'psnr').
    Two spellings of one automation are an error naming both; an unknown name gets a did-you-mean
    among every spelling."""
    train = tree.get("train")
    section = train.get(AUTOMATIONS_SECTION) if isinstance(train, dict) else None
    if not isinstance(section, dict):
        return tree
    assert isinstance(train, dict)
    out: dict[Any, Any] = {}
    spelt_as: dict[str, Any] = {}
    for key, value in section.items():
        if key == "enabled":
            out[key] = value
            continue
        name = canonical_automation(str(key))
        if name is None:
            raise AutosrError(f"{_AUTOMATIONS_WHERE}: unknown key '{key}'{did_you_mean(str(key), all_spellings())}",
                              _unknown_hint(True))
        if name in spelt_as:
            raise AutosrError(f"{_AUTOMATIONS_WHERE}: '{spelt_as[name]}' and '{key}' are two spellings of one automation ({name})",
                              "keep one of them")
        spelt_as[name] = key
        metric = value.get("monitor_metric") if isinstance(value, dict) else None
        if name == "IntelligentEarlyStopping" and isinstance(metric, str) and metric.startswith("val/"):
            value = {**value, "monitor_metric": metric.removeprefix("val/")}
        out[name] = value
    return {**tree, "train": {**train, AUTOMATIONS_SECTION: out}}


def _canonical_key(dotted: str) -> str:
    """A `--set` path through an automation spelt the fork's way, with autosr's name for it."""
    parts = dotted.split(".")
    if len(parts) > 2 and parts[:2] == ["train", AUTOMATIONS_SECTION] and parts[2] != "enabled":
        parts[2] = canonical_automation(parts[2]) or parts[2]
    return ".".join(parts)


def _as_written(tree: dict[str, Any], dotted: str) -> str:
    """A canonical `--set` path, spelt as the tree already spells that automation (so that the
    override lands in it rather than beside it)."""
    parts = dotted.split(".")
    found, section = lookup(tree, f"train.{AUTOMATIONS_SECTION}")
    if len(parts) > 2 and parts[:2] == ["train", AUTOMATIONS_SECTION] and found and isinstance(section, dict):
        parts[2] = next((k for k in section if k != "enabled" and canonical_automation(str(k)) == parts[2]), parts[2])
    return ".".join(parts)


# ---- --set overrides --------------------------------------------------------------------------


def spec_at(dotted: str) -> Any:
    """The schema node a dotted key names; unknown parts are an error with a suggestion."""
    spec: Any = ROOT
    walked: list[str] = []
    for part in dotted.split("."):
        if isinstance(spec, Either):  # datasets entries: pick the struct that knows the key
            spec = next((o for o in spec.options if isinstance(o, Struct) and part in o.keys), spec.options[0])
        if isinstance(spec, Struct):
            if part not in spec.keys:
                where = ".".join(walked) or "top level"
                raise AutosrError(
                    f"--set {dotted}: '{part}' is not a key of {where}{did_you_mean(part, spec.keys)}",
                    "see docs/config.md for the keys",
                )
            spec = spec.keys[part]
        elif isinstance(spec, MapOf):
            found = spec.spec_for(part)
            if found is None:
                raise AutosrError(f"--set {dotted}: '{part}' is not allowed here", "check the key path")
            spec = found
        elif isinstance(spec, ListOf):
            if not part.isdigit():
                raise AutosrError(f"--set {dotted}: '{part}' should be a list index (0, 1, …)", "e.g. train.losses.0.loss_weight")
            spec = spec.item
        elif isinstance(spec, FreeMap):
            spec = None  # free mappings: their owner checks the key (network_g, losses)
        else:
            raise AutosrError(f"--set {dotted}: '{'.'.join(walked)}' has no sub-keys", "set it as a whole")
        walked.append(part)
    return spec


def parse_override(text: str) -> tuple[str, Any]:
    """'train.total_iter=60000' → ('train.total_iter', 60000), typed by the schema."""
    if "=" not in text:
        raise AutosrError(f"--set {text}: expected key=value", "e.g. --set train.total_iter=60000")
    key, raw = (s.strip() for s in text.split("=", 1))
    key = _canonical_key(key)
    spec = spec_at(key)
    try:
        value = yaml.safe_load(raw) if raw else None
    except yaml.YAMLError:
        value = raw
    if isinstance(spec, Scalar) and spec.kind is float and isinstance(value, str) and _looks_numeric(value, finite=False):
        value = float(value)  # on the command line '5e-4' clearly means a number ('nan': refused by the range check)
    if isinstance(spec, Scalar) and spec.kind is str and value is not None and not isinstance(value, str):
        value = raw
    if spec is not None:
        value = check(value, spec, f"--set {key}")
    return key, value


def lookup(tree: Any, dotted: str) -> tuple[bool, Any]:
    """(found, value) of a dotted key in a nested mapping."""
    node = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def set_path(tree: dict, dotted: str, value: Any) -> None:
    """Set a dotted key in a nested dict/list tree, creating mappings on the way."""
    node: Any = tree
    parts = dotted.split(".")
    for depth, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            node = node[_list_index(node, part, dotted, parts[:depth])]
            continue
        if not isinstance(node, dict):
            raise AutosrError(f"--set {dotted}: '{'.'.join(parts[:depth])}' has no sub-keys", "set it as a whole")
        node = node.setdefault(part, {})
    last = parts[-1]
    if isinstance(node, list):
        node[_list_index(node, last, dotted, parts[:-1])] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise AutosrError(f"--set {dotted}: '{'.'.join(parts[:-1])}' has no sub-keys", "set it as a whole")


def _list_index(node: list, part: str, dotted: str, walked: list[str]) -> int:
    """A `--set` list index, checked: a digit string below the list's length."""
    # plan._apply_overrides edits a list value wrapped as {"x": value}: leave its "x" out of messages.
    shown = dotted.removeprefix("x.")
    where = ".".join(walked).removeprefix("x").lstrip(".") or "the list"
    if not part.isdigit():
        raise AutosrError(f"--set {shown}: '{part}' should be a list index (0, 1, …)", f"{where} has {len(node)} entries")
    index = int(part)
    if index >= len(node):
        last = f"0–{len(node) - 1}" if node else "none"
        raise AutosrError(f"--set {shown}: index {index} is past the end: {where} has {len(node)} entries",
                          f"use an existing index ({last})")
    return index


def apply_overrides(tree: dict, overrides: list[str]) -> dict:
    out = copy.deepcopy(tree)
    for text in overrides:
        key, value = parse_override(text)
        set_path(out, _as_written(out, key), value)
    return out


def stale_after_overrides(cfg_data: dict[str, Any], overrides: list[str]) -> list[str]:
    """Warnings, one line each, for the values sized to the run's length that no longer fit after a
    `--set train.total_iter=N`: warm-up, scheduler milestones / T_max, val.val_freq, checkpoint frequency.

    cfg_data: the config tree, before or after `overrides` (they are applied again; that changes nothing).
    Values the same overrides set are the user's choice and are not reported. [] when total_iter was
    not overridden or everything fits."""
    parsed = [parse_override(text) for text in overrides]
    if not any(key == "train.total_iter" for key, _ in parsed):
        return []
    tree = apply_overrides(cfg_data, overrides)
    total = tree.get("train", {}).get("total_iter")
    if not isinstance(total, int) or isinstance(total, bool) or total < 1:
        return []
    set_keys = {key for key, _ in parsed}
    out: list[str] = []

    def note(key: str, value: Any, relation: str, fix: str, effect: str = "") -> None:
        if key in set_keys or any(k.startswith(key + ".") for k in set_keys):
            return
        out.append(f"{key}={value} {relation} the new train.total_iter={total}{effect}: add --set {fix}")

    train = tree.get("train", {})
    warmup = train.get("warmup_iter")
    if isinstance(warmup, int) and warmup > 0 and warmup >= total / 2:
        note("train.warmup_iter", warmup, "is half or more of", f"train.warmup_iter={total // 10}",
             " (most of the run at a warm-up learning rate)")
    sched = train.get("scheduler") or {}
    if isinstance(sched, dict):
        milestones = sched.get("milestones")
        if isinstance(milestones, list) and any(isinstance(m, int) and m >= total for m in milestones):
            fitted = sorted({max(1, round(total * f)) for f in (0.75, 0.875)})
            shown = "[" + ",".join(str(m) for m in milestones) + "]"
            fix = "'train.scheduler.milestones=[" + ",".join(str(m) for m in fitted) + "]'"
            note("train.scheduler.milestones", shown, "reaches or passes", fix, " (the learning rate would not decay in time)")
        t_max = sched.get("T_max")
        if isinstance(t_max, int) and t_max > total:
            note("train.scheduler.T_max", t_max, "is past", f"train.scheduler.T_max={total}", " (the cosine would stop part-way down)")
    every = max(1, total // 25)
    val_freq = tree.get("val", {}).get("val_freq")
    if isinstance(val_freq, int) and val_freq > total and tree.get("val", {}).get("val_enabled", True):
        note("val.val_freq", val_freq, "is past", f"val.val_freq={every}", " (no validation would run)")
    save = tree.get("logger", {}).get("save_checkpoint_freq")
    if isinstance(save, int) and save > total:
        fit = val_freq if isinstance(val_freq, int) and 0 < val_freq <= total else every
        note("logger.save_checkpoint_freq", save, "is past", f"logger.save_checkpoint_freq={fit}", " (no checkpoint before the end)")
    return out


# ---- loading ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunConfig:
    """A validated config: `data` is the normalised YAML tree; accessors name what the trainer reads."""

    data: dict[str, Any]
    source: Path

    @property
    def name(self) -> str:
        return self.data["name"]

    @property
    def scale(self) -> int:
        return self.data["scale"]

    @property
    def train_set(self) -> dict[str, Any]:
        return self.data["datasets"]["train"]

    @property
    def val_sets(self) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.data.get("datasets", {}).items() if k.startswith("val")}

    @property
    def train(self) -> dict[str, Any]:
        return self.data["train"]

    @property
    def lq_size(self) -> int:
        ds = self.train_set
        return ds["lq_size"] if "lq_size" in ds else ds["gt_size"] // self.scale

    @property
    def total_iter(self) -> int:
        return self.train["total_iter"]

    def section(self, *keys: str) -> dict[str, Any]:
        node: Any = self.data
        for key in keys:
            node = node.get(key, {}) if isinstance(node, dict) else {}
        return node


def validate(tree: Any, source: Path | str = "config", *, need_training: bool = True) -> RunConfig:
    """Schema check plus the cross-key rules; raises AutosrError naming the file and key."""
    if not isinstance(tree, dict):
        raise AutosrError(f"{source}: expected a YAML mapping at the top level", "is this an autosr/traiNNer config?")
    try:
        named = _fork_names(_registry_names(tree))
        root_extra, dataset_extra = _degradation_keys(named)
        data = check(_without(named, root_extra, dataset_extra), ROOT, "")
        data.update(root_extra)
        if dataset_extra:
            data["datasets"]["train"].update(dataset_extra)
        _check_rules(data, need_training)
    except AutosrError as exc:
        raise AutosrError(f"{source}: {exc.message}", exc.hint) from None
    return RunConfig(data=data, source=Path(source))


def _registry_names(tree: dict[str, Any]) -> dict[str, Any]:
    """Type names as traiNNer's registries match them: lower-cased (`PairedImageDataset`,
    `ParagonSR2_Nano` and `MUNet` are `pairedimagedataset`, `paragonsr2_nano`, `munet`)."""
    out = dict(tree)
    for net in ("network_g", "network_d"):
        if isinstance(out.get(net), dict) and isinstance(out[net].get("type"), str):
            out[net] = {**out[net], "type": out[net]["type"].lower()}
    if isinstance(out.get("datasets"), dict):
        out["datasets"] = {name: ({**d, "type": d["type"].lower()} if isinstance(d, dict) and isinstance(d.get("type"), str) else d)
                           for name, d in out["datasets"].items()}
    return out


def on_the_fly(tree: dict[str, Any]) -> bool:
    """The training LR is made on the fly from HR crops: a realesrgandataset, `high_order_degradation:
    true`, or a training set without dataroot_lq."""
    datasets = tree.get("datasets")
    train = datasets.get("train") if isinstance(datasets, dict) else None
    if not isinstance(train, dict):
        return False
    return (str(train.get("type", "")).lower() == "realesrgandataset" or tree.get("high_order_degradation") is True
            or "dataroot_lq" not in train)


def _degradation_keys(tree: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """For an on-the-fly config, the root and train-dataset keys the schema does not list: the
    degradation's options (dozens, per pipeline), checked by their owner when the run is built
    (autosr/train/degradations.py: unknown ones are refused there with a did-you-mean)."""
    if not on_the_fly(tree):
        return {}, {}
    root_keys = ROOT.keys
    root = {k: v for k, v in tree.items() if k not in root_keys}
    train = tree["datasets"]["train"]
    dataset_keys = ROOT.keys["datasets"].spec_for("train").keys
    return root, {k: v for k, v in train.items() if k not in dataset_keys}


def _without(tree: dict[str, Any], root: dict[str, Any], dataset: dict[str, Any]) -> dict[str, Any]:
    if not root and not dataset:
        return tree
    out = {k: v for k, v in tree.items() if k not in root}
    if dataset:
        out["datasets"] = {**out["datasets"], "train": {k: v for k, v in out["datasets"]["train"].items() if k not in dataset}}
    return out


def _check_rules(data: dict[str, Any], need_training: bool) -> None:
    scale = data["scale"]  # 1–8, and every other number's range: the schema (schema.Scalar)
    net = data.get("network_g")
    if net is not None and "scale" in net and net["scale"] != scale:
        raise AutosrError(f"network_g.scale: {net['scale']} differs from scale: {scale}", "make them equal or drop network_g.scale")
    datasets = data.get("datasets", {})
    train_ds = datasets.get("train")
    if need_training:
        for key in ("network_g", "datasets", "train"):
            if key not in data:
                raise AutosrError(f"'{key}' is required to train", f"add a {key} section (autosr init writes one)")
        if train_ds is None:
            raise AutosrError("datasets.train is required to train", "add datasets.train (autosr init writes one)")
    if train_ds is not None:
        sizes = [k for k in ("lq_size", "gt_size") if k in train_ds]
        if len(sizes) != 1:
            raise AutosrError("datasets.train: set exactly one of lq_size / gt_size", f"found {sizes or 'neither'}")
        if "gt_size" in train_ds and train_ds["gt_size"] % scale:
            raise AutosrError(f"datasets.train.gt_size: {train_ds['gt_size']} is not a multiple of scale {scale}", "use lq_size instead")
    train = data.get("train", {})
    milestones = train.get("scheduler", {}).get("milestones")
    if milestones and milestones != sorted(milestones):
        raise AutosrError("train.scheduler.milestones: must be increasing", f"got {milestones}")
    has_val = any(k.startswith("val") for k in datasets)
    val = data.get("val", {})
    if has_val and val.get("val_enabled", True) and "val_freq" not in val:
        raise AutosrError("val.val_freq is required when a validation dataset exists", "add val.val_freq (e.g. 1000)")
    if has_val and val.get("val_enabled", True) and val.get("val_freq") == 0:
        raise AutosrError("val.val_freq: 0 is out of range while validation is on (allowed: ≥ 1)",
                          "set val.val_enabled: false to turn validation off")


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, first: int, second: int) -> None:
        super().__init__(f"key '{key}' appears twice in one mapping (lines {first} and {second})")


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe loading (no Python tags) that refuses a key given twice in one mapping: plain YAML
    silently keeps the last one. Keys a merge (`<<: *anchor`) brings in may still be overridden."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise _DuplicateKey(key, seen[key], line)
                seen[key] = line
            except TypeError:  # unhashable: SafeLoader reports it
                continue
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise AutosrError(f"{path}: no such file", "run `autosr init` first to write a config, or check the path")
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as exc:
        raise AutosrError(f"{path}: {exc}", "keep one of them (YAML would silently use the last)") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise AutosrError(f"{path}: not valid YAML{where}", str(getattr(exc, "problem", exc))) from None
    except UnicodeDecodeError:
        raise AutosrError(f"{path}: not a text file", "pass the YAML config") from None


def load_config(path: Path, overrides: list[str] | None = None, *, need_training: bool = True) -> RunConfig:
    tree = read_yaml(path)
    if isinstance(tree, dict) and overrides:
        tree = apply_overrides(tree, overrides)
    return validate(tree, path, need_training=need_training)


def without_fork_sections(tree: dict[str, Any]) -> dict[str, Any]:
    """The upstream flavour: traiNNer-redux proper has no DLS/automation sections."""
    out = copy.deepcopy(tree)
    for key in FORK_SECTIONS:
        out.get("train", {}).pop(key, None)
    return out
