"""`autosr presets`: the architecture presets with the real parameter counts of what autosr builds."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from autosr.presets import all_presets


def print_presets() -> None:
    from autosr.archs import build_network, count_parameters

    table = Table(title="ParagonSR2 presets (presets/*.yml)")
    for column in ("arch", "params", "C", "groups×blocks", "attention", "lr", "warmup", "total_iter", "patch", "ref batch", "MiB/sample"):
        table.add_column(column, justify="right" if column not in ("arch", "attention") else "left")
    for p in all_presets():
        params = count_parameters(build_network({"type": p.arch, "scale": 2}))
        n = p.network
        table.add_row(
            p.arch, f"{params:,}", str(n["num_feat"]), f"{n['num_groups']}×{n['num_blocks']}",
            "yes" if n["use_attention"] else "no", f"{p.lr:.1e}", str(p.warmup_iter), f"{p.total_iter:,}",
            str(p.lq_size), str(p.effective_batch), f"{p.per_sample_mib:g} ({p.memory_source})",
        )
    Console().print(table)
