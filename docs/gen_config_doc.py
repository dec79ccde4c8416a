"""Regenerate docs/config.md from autosr/schema.py: python docs/gen_config_doc.py"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autosr.fork_keys import AUTOMATIONS_SECTION, DLS_SECTION, UNUSED  # noqa: E402
from autosr.schema import DEFAULTS, ROOT, Either, FreeMap, ListOf, MapOf, Scalar, Struct  # noqa: E402

# The fork's keys autosr accepts but does not use (autosr/fork_keys.py; `autosr train` reports them).
FORK_UNUSED = {f"train.{DLS_SECTION}.{key}" for key in UNUSED[DLS_SECTION]} | {
    f"train.{AUTOMATIONS_SECTION}.{name}.{key}" for name, keys in UNUSED.items() if name != DLS_SECTION for key in keys}


def type_name(spec) -> str:
    if isinstance(spec, Scalar):
        text = ", ".join(f"`{c}`" for c in spec.choices) if spec.choices else spec.kind.__name__
        return text + (" or null" if spec.nullable else "")
    if isinstance(spec, Either):
        return " or ".join(type_name(o) for o in spec.options)
    if isinstance(spec, ListOf):
        return f"list of {type_name(spec.item)}"
    if isinstance(spec, FreeMap):
        return "mapping (" + ", ".join(spec.required) + " required)" if spec.required else "mapping"
    return "mapping"


def rows(spec, prefix: str = ""):
    if isinstance(spec, Struct):
        for key, child in spec.keys.items():
            path = f"{prefix}{key}"
            yield path, type_name(child) + (" — *the fork's, unused*" if path in FORK_UNUSED else ""), key in spec.required
            yield from rows(child, path + ".")
    elif isinstance(spec, MapOf):
        for key_prefix, child in spec.by_prefix:
            yield from rows(child, f"{prefix}{key_prefix or '<name>'}{'*' if key_prefix == 'val' else ''}.")
    elif isinstance(spec, Either):
        for option in spec.options:
            if isinstance(option, Struct):
                yield from rows(option, prefix)


def default_text(key: str) -> str:
    generic = key.replace("val*.", "val.")
    if generic not in DEFAULTS:
        return ""
    value = DEFAULTS[generic]
    text = "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    return f"`{text}`" + (" *autosr*" if generic in AUTOSR_CHOICES else "")


# Defaults that are autosr's own choice (traiNNer requires the key, or has no default for it).
AUTOSR_CHOICES = {"path.param_key_g", "datasets.train.num_worker_per_gpu", "train.optim_g.lr", "val.val_enabled",
                  "val.save_img", "logger.print_freq", "logger.save_checkpoint_freq", "logger.use_tb_logger"}


def render() -> str:
    lines = [
        "# Config keys",
        "",
        "Every key autosr reads and writes (traiNNer-redux's names), generated from `autosr/schema.py` by",
        "`python docs/gen_config_doc.py`. Unknown keys and wrong types are errors, as in traiNNer-redux.",
        "`--set KEY=VALUE` takes any of these paths (list items by index: `train.losses.0.loss_weight`).",
        "`network_g` takes the architecture's keywords (`autosr presets`); each loss entry its type's options.",
        "",
        "A missing key means its default: traiNNer-redux's own where traiNNer defines the key (a config",
        "that loads in both trains the same way), marked *autosr* where traiNNer requires the key or",
        "lacks it. The defaults live in `autosr/schema.py` (`DEFAULTS`).",
        "",
        "`train.dynamic_loss_scheduling` and `train.training_automations` are the ParagonSR2 fork's sections.",
        "Each automation also answers to the fork's spellings of it (`DynamicBatchAndPatchSizeOptimizer`, snake_case",
        "such as `intelligent_learning_rate_scheduler`, any case: docs/scheduler.md lists them), loaded under autosr's",
        "name. Keys marked *the fork's, unused* are accepted so that the fork's configs load; `autosr train` says",
        "what autosr does instead.",
        "",
        "| key | type | required | default |",
        "|---|---|---|---|",
    ]
    lines += [f"| `{k}` | {t} | {'yes' if r else ''} | {default_text(k)} |" for k, t, r in rows(ROOT)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    (Path(__file__).resolve().parent / "config.md").write_text(render(), encoding="utf-8")
