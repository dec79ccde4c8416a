"""autosr report: reads only the run folder; summary, decisions and a self-contained HTML with plots."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from typer.testing import CliRunner

from autosr.cli import app
from autosr.report import load_run, render_html, svg_plot

runner = CliRunner()


def fake_run(folder):
    folder.mkdir(parents=True)
    rows = [{"iter": 0, "kind": "baseline", "method": "bicubic", "psnr": 30.0, "ssim": 0.8}]
    for i in range(1, 11):
        rows.append({"iter": i * 10, "kind": "train", "loss": 1 / i, "loss_l1": 0.8 / i, "lr": 1e-4, "samples_s": 1000.0 + i})
        if i % 5 == 0:
            rows.append({"iter": i * 10, "kind": "val", "psnr": 29.0 + i / 2, "ssim": 0.8 + i / 100})
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"iter": 1')  # a cut last line
    events = [
        {"iter": 0, "time": 0, "source": "plan", "key": "datasets.train.batch_size_per_gpu", "old": None, "new": "16", "reason": "VRAM"},
        {"iter": 40, "time": 0, "source": "trainer", "key": "batch_size", "old": 16, "new": 14, "reason": "CUDA out of memory at batch 16"},
    ]
    (folder / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (folder / "config.yml").write_text("name: r\nscale: 2\nnetwork_g: {type: paragonsr2_nano}\ntrain: {total_iter: 100}\n")
    return folder


def test_summary_and_html(tmp_path):
    run = fake_run(tmp_path / "r")
    result = runner.invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    assert "34.0000" in result.output and "+4.0000" in result.output  # best PSNR vs bicubic
    assert "1 planned" in result.output and "1 at run time" in result.output and "out of memory" in result.output
    page = (run / "report.html").read_text()
    assert page.count("<svg") == 5 and "CUDA out of memory at batch 16" in page and "bicubic" in page


def test_plots_are_well_formed_svg(tmp_path):
    run = load_run(fake_run(tmp_path / "r"))
    for svg in render_html(run).split("<svg")[1:]:
        ET.fromstring("<svg" + svg.split("</svg>")[0] + "</svg>")
    assert svg_plot("empty", {"x": []}) == ""


def test_not_a_run_folder_is_exit_2(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "not a run folder" in result.output and "autosr train" in result.output
