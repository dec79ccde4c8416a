"""`autosr presets`: the architecture presets with the real parameter counts of what autosr builds."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table

from autosr.plan.presets import listed_presets


def print_presets() -> None:
    from autosr.archs import build_network, count_parameters

    table = Table(title="ParagonSR2 presets (presets/*.yml; paragonsr2_<variant>)", box=box.SIMPLE_HEAD,
                  pad_edge=False, collapse_padding=True,
                  caption="batch: the reference batch the LR is tuned for; MiB: training memory per sample at lq 64, ×2, bf16")
    for column in ("variant", "params", "C", "g×b", "attn", "lr", "iters", "lq", "batch", "MiB"):
        table.add_column(column, justify="left" if column in ("variant", "attn") else "right", no_wrap=True)
    for p in listed_presets():
        # every parameter, the frozen base path included: the counts the architectures publish
        params = count_parameters(build_network({"type": p.arch, "scale": 2}), include_frozen=True)
        n = p.network
        attention = n.get("use_attention", n.get("attention_mode") is not None)  # nano…xl / realtime…pro
        table.add_row(
            p.variant, f"{params:,}", str(n["num_feat"]), f"{n['num_groups']}×{n['num_blocks']}",
            "yes" if attention else "no", f"{p.lr:.1e}", f"{p.total_iter // 1000}k",
            str(p.lq_size), str(p.effective_batch), f"{p.per_sample_mib:.0f}" + ("" if p.memory_source == "measured" else " (est.)"),
        )
    Console().print(table)
