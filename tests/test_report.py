"""autosr report: reads only the run folder; summary first, readable plots, condensed decisions, runs side by side."""

from __future__ import annotations

import json
import os
import random
import stat
import time
import xml.etree.ElementTree as ET

import pytest
from typer.testing import CliRunner

from autosr.cli import app
from autosr.report.summary import SCHEMA, load_run, render_html, summarize
from autosr.report.svg import Chart, Series, render

runner = CliRunner()

T0 = 1_700_000_000.0


def fake_run(folder, *, total=100, iters=10, end=None, psnr_base=29.0, cut=True):
    """A small hand-made run: `end` is None (no end recorded), "stop", "budget" or "checkpoint" (interrupted)."""
    folder.mkdir(parents=True)
    rows = [{"iter": 0, "kind": "baseline", "method": "bicubic", "psnr": 30.0, "ssim": 0.8}]
    for i in range(1, iters + 1):
        rows.append({"iter": i * 10, "kind": "train", "loss": 1 / i, "loss_l1": 0.8 / i, "loss_perceptual": 0.001 / i, "lr": 1e-4,
                     "lr_scale": 1.0, "batch_size": 16, "grad_norm": 0.5, "grad_clip_threshold": 1.0, "dynamic_weight_l1": 1.0 + i / 100,
                     "samples_s": 1000.0 + i, "peak_vram_gib": 2.5})
        if i % 5 == 0:
            rows.append({"iter": i * 10, "kind": "val", "psnr": psnr_base + i / 2, "ssim": 0.8 + i / 100})
    text = "".join(json.dumps(r) + "\n" for r in rows)
    (folder / "metrics.jsonl").write_text(text + ('{"iter": 1' if cut else ""))  # a cut last line
    events = [
        {"iter": 0, "time": T0, "source": "plan", "key": "datasets.train.batch_size_per_gpu", "old": None, "new": "16", "reason": "VRAM"},
        {"iter": 0, "time": T0 + 1, "source": "trainer", "key": "phase", "old": None, "new": "warmup", "reason": "start"},
        {"iter": 40, "time": T0 + 30, "source": "trainer", "key": "batch_size", "old": 16, "new": 14,
         "reason": "CUDA out of memory at batch 16"},
        {"iter": 50, "time": T0 + 40, "source": "trainer", "key": "phase", "old": "warmup", "new": "main", "reason": "x"},
        {"iter": 60, "time": T0 + 50, "source": "automation", "key": "lr_scale", "old": 1.0, "new": 0.5,
         "reason": "plateau " + "a very long reason that must wrap and not be cut " * 4 + "END-OF-REASON"},
    ]
    events += [{"iter": 10 * k, "time": T0 + k, "source": "automation", "key": "loss_weight.l1", "old": 1.0, "new": [1.0, {"k": k}],
                "reason": "balance"} for k in range(1, 9)]
    if end == "stop":
        events.append({"iter": iters * 10, "time": T0 + 90, "source": "trainer", "key": "stop", "old": None, "new": iters * 10,
                       "reason": "no PSNR gain for 5 validations"})
    if end == "budget":
        events.append({"iter": iters * 10, "time": T0 + 90, "source": "trainer", "key": "time_budget", "old": "2m", "new": "1m59s",
                       "reason": "100 iterations"})
    if end == "checkpoint":
        (folder / "checkpoints").mkdir()
        (folder / "checkpoints" / f"state_{iters * 10}.pt").write_bytes(b"x")
    (folder / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    config = f"name: {folder.name}\nscale: 2\nnetwork_g: {{type: paragonsr2_nano}}\ntrain: {{total_iter: {total}}}\n"
    (folder / "config.yml").write_text(config)
    (folder / "hardware.json").write_text(json.dumps({"backend": "cuda", "gpus": [{"name": "NVIDIA H100"}]}))
    (folder / "models").mkdir()
    (folder / "models" / "net_g_best.safetensors").write_bytes(b"w")
    (folder / "models" / "best.json").write_text(json.dumps({"iter": iters * 10, "metrics": {}}))
    return folder


def test_summary_first_and_html(tmp_path):
    run = fake_run(tmp_path / "r")
    result = runner.invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "better than bicubic by 4.00 dB" in out and "34.0000" in out and "+4.0000" in out
    assert "finished" in out and "100 of 100" in out and "1,006 samples/s" in out and "2.5 GiB" in out and "1× NVIDIA H100" in out
    assert "net_g_best.safetensors" in out and "0m50s" in out  # model file; wall time from the journal
    assert "1 planned" in out and "12 at run time" in out and "CUDA out of" in out
    assert "1 unreadable line" in out  # the cut last line is named, the rest shown
    page = (run / "report.html").read_text()
    assert page.index("Summary") < page.index("<svg")  # summary first
    assert "Better than bicubic by 4.00 dB" in page and "END-OF-REASON" in page  # long values wrapped, not cut
    for title in ("loss: l1", "loss: perceptual", "dynamic loss weights", "lr scale", "clip threshold", "batch size", "bicubic 30"):
        assert title in page, title
    assert "<rect" in page and "phase main" in page and "lr_scale: 1.0 → 0.5" in page  # phases shaded, decisions marked


def test_worse_than_bicubic_is_said(tmp_path):
    run = fake_run(tmp_path / "r", psnr_base=24.0)
    result = runner.invoke(app, ["report", str(run), "--no-html"])
    assert result.exit_code == 0 and "worse than bicubic by 1.00 dB" in result.output
    assert not (run / "report.html").exists()


def test_decisions_condensed_and_structured_values_shown(tmp_path):
    page = render_html(load_run(fake_run(tmp_path / "r")))
    assert page.count("loss_weight.l1") == 1 and "10 … 80" in page and "<td>8</td>" in page
    assert html_unescape(page).count('[1.0, {"k": 8}]') == 1  # a list/mapping shown as JSON


def html_unescape(text):
    import html

    return html.unescape(text)


def test_plots_are_well_formed_svg(tmp_path):
    run = load_run(fake_run(tmp_path / "r"))
    svgs = render_html(run).split("<svg")[1:]
    assert len(svgs) >= 10
    for svg in svgs:
        ET.fromstring("<svg" + svg.split("</svg>")[0] + "</svg>")
    assert render(Chart("empty", "x", "y", [Series("x", [])])) == ""
    one = render(Chart("one", "x", "y", [Series("x", [(1.0, 2.0)])]))
    ET.fromstring(one)


@pytest.mark.parametrize(("end", "code", "words"), [
    ("stop", "stopped", "no PSNR gain for 5 validations"),
    ("budget", "finished", "time budget"),
    ("checkpoint", "interrupted", "interrupted at iteration 50"),
    (None, "no_end", "no end recorded"),
])
def test_states(tmp_path, end, code, words):
    run = fake_run(tmp_path / "r", total=200 if end != "budget" else 300, iters=5, end=end)
    result = runner.invoke(app, ["report", str(run), "--no-html"])
    assert result.exit_code == 0 and words in result.output, result.output
    assert summarize(load_run(run))["state"]["code"] == code


def _lock(run, pid, host=None, started=None):
    import socket

    record = {"pid": pid, "host": host or socket.gethostname(), "started": time.time() if started is None else started}
    (run / ".lock").write_text(json.dumps(record))


def test_running_and_killed_runs_are_told_apart_by_the_lock(tmp_path):
    import subprocess
    import sys

    running = fake_run(tmp_path / "running", total=200, iters=5)
    _lock(running, os.getppid())  # the test's parent: alive, and started before the lock was written
    state = summarize(load_run(running))["state"]
    assert state["code"] == "running" and f"pid {os.getppid()}" in state["text"]

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    killed = fake_run(tmp_path / "killed", total=200, iters=5)
    _lock(killed, int(gone.stdout))
    state = summarize(load_run(killed))["state"]
    assert state["code"] == "crashed" and "is gone" in state["text"] and "iteration 50" in state["text"]

    elsewhere = fake_run(tmp_path / "elsewhere", total=200, iters=5)
    _lock(elsewhere, 1, host="another-machine")
    state = summarize(load_run(elsewhere))["state"]
    assert state["code"] == "no_end" and "another-machine" in state["text"]


def test_a_failure_recorded_by_train_is_a_crash_until_resumed(tmp_path):
    run = fake_run(tmp_path / "r", total=200, iters=5)
    failed = {"iter": 50, "time": T0 + 60, "source": "trainer", "key": "failed", "old": None, "new": "AutosrRuntimeError",
              "reason": "run/x.png: cannot read"}
    with (run / "events.jsonl").open("a") as events:
        events.write(json.dumps(failed) + "\n")
    result = runner.invoke(app, ["report", str(run), "--no-html"])
    assert result.exit_code == 0 and "crashed at iteration 50: run/x.png: cannot read" in result.output
    resumed = {**failed, "key": "resume", "new": 40, "reason": "resumed from state_40.pt"}
    with (run / "events.jsonl").open("a") as events:
        events.write(json.dumps(resumed) + "\n")
    assert summarize(load_run(run))["state"]["code"] == "no_end"


def test_empty_missing_and_broken_files_render_what_they_can(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.yml").write_text("name: e\n")
    result = runner.invoke(app, ["report", str(empty)])
    assert result.exit_code == 0 and "metrics.jsonl: missing" in result.output and "no training recorded" in result.output
    assert (empty / "report.html").exists()

    broken = fake_run(tmp_path / "broken")
    (broken / "config.yml").write_text("name: [unclosed\n  : :")
    (broken / "hardware.json").unlink()
    with (broken / "metrics.jsonl").open("ab") as f:
        f.write(b"\n" + bytes(random.Random(0).randrange(256) for _ in range(3000)) + b"\n")
    result = runner.invoke(app, ["report", str(broken)])
    assert result.exit_code == 0, result.output
    assert "config.yml: unreadable" in result.output and "hardware.json: missing" in result.output
    assert "unreadable line" in result.output and "34.0000" in result.output
    assert "config.yml: unreadable" in (broken / "report.html").read_text()

    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "metrics.jsonl").write_bytes(os.urandom(5000))
    (garbage / "events.jsonl").write_text('[1, 2]\n{"iter": "x", "key": 3}\n')
    (garbage / "config.yml").write_text("- just\n- a list\n")
    result = runner.invoke(app, ["report", str(garbage)])
    assert result.exit_code == 0 and "not a mapping" in result.output, result.output


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_run_folder(tmp_path):
    run = fake_run(tmp_path / "r")
    (run / "events.jsonl").chmod(0)
    run.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        result = runner.invoke(app, ["report", str(run)])
        assert result.exit_code == 0 and "cannot write the report" in result.output and "cannot read events.jsonl" in result.output
    finally:
        run.chmod(0o755)
        (run / "events.jsonl").chmod(0o644)


def test_read_only_report_target(tmp_path, monkeypatch):
    run = fake_run(tmp_path / "r")

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("autosr.report.summary.write_text_atomic", refuse)
    result = runner.invoke(app, ["report", str(run)])
    assert result.exit_code == 0 and "cannot write the report" in result.output and "34.0000" in result.output


def test_not_a_run_folder_is_exit_2(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "not a run folder" in result.output and "autosr train" in result.output
    result = runner.invoke(app, ["report", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "not a run folder" in result.output


def test_html_into_a_missing_folder_is_refused(tmp_path):
    run = fake_run(tmp_path / "r")
    result = runner.invoke(app, ["report", str(run), "--html", str(tmp_path / "missing" / "page.html")])
    assert result.exit_code == 2 and "does not exist" in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "missing").exists()
    result = runner.invoke(app, ["report", str(run), "--html", str(tmp_path / "page.html")])
    assert result.exit_code == 0 and (tmp_path / "page.html").exists()


def test_json_schema(tmp_path):
    run = fake_run(tmp_path / "r", end="stop")
    result = runner.invoke(app, ["report", str(run), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["schema"] == SCHEMA
    assert set(data) == {"schema", "folder", "name", "arch", "scale", "params", "state", "iterations", "wall_time_s", "metrics",
                         "final_loss", "mean_samples_s", "peak_vram_gib", "hardware", "decisions", "models", "use", "problems"}
    assert set(data["metrics"]["psnr"]) == {"best", "best_iter", "final", "final_iter", "bicubic", "gain"}
    assert data["metrics"]["psnr"]["gain"] == pytest.approx(4.0) and data["state"]["code"] == "stopped"
    assert data["iterations"] == {"done": 100, "planned": 100} and data["wall_time_s"] == 90.0
    assert data["models"][0]["path"].endswith("net_g_best.safetensors")
    assert data["use"] == [f"autosr upscale {run} INPUT OUTPUT", f"autosr export {run} --onnx r.onnx"]
    assert not (run / "report.html").exists()  # --json prints data only
    doc = (__import__("pathlib").Path(__file__).parents[1] / "docs" / "report-json.md").read_text()
    for key in data:
        assert f"`{key}`" in doc, key
    assert SCHEMA in doc


def test_runs_side_by_side(tmp_path):
    a = fake_run(tmp_path / "runs" / "a", psnr_base=24.0)
    b = fake_run(tmp_path / "runs" / "b")
    target = tmp_path / "cmp.html"
    result = runner.invoke(app, ["report", str(a), str(b), "--html", str(target)])
    assert result.exit_code == 0, result.output
    assert "b ★" in result.output and "2 runs" in result.output
    page = target.read_text()
    assert "against iterations" in page and "against wall time" in page and "b ★ best" in page
    for svg in page.split("<svg")[1:]:
        ET.fromstring("<svg" + svg.split("</svg>")[0] + "</svg>")
    result = runner.invoke(app, ["report", str(a), str(b), "--json"])
    assert [r["name"] for r in json.loads(result.stdout)["runs"]] == ["a", "b"]


def test_parent_folder_lists_runs(tmp_path):
    fake_run(tmp_path / "runs" / "a", psnr_base=24.0)
    fake_run(tmp_path / "runs" / "b", end="stop")
    (tmp_path / "runs" / "not-a-run").mkdir()
    result = runner.invoke(app, ["report", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    assert "2 runs" in result.output and "stopped" in result.output and "34.000" in result.output and "b ★" in result.output
    data = json.loads(runner.invoke(app, ["report", str(tmp_path / "runs"), "--json"]).stdout)
    assert data["schema"] == SCHEMA and len(data["runs"]) == 2


def test_a_200k_iteration_run_reports_quickly_and_small(tmp_path):
    run = tmp_path / "big"
    run.mkdir()
    rng = random.Random(1)
    rows = [{"iter": 0, "kind": "baseline", "psnr": 30.0, "ssim": 0.8}]
    for i in range(1, 2001):
        it = i * 100
        rows.append({"iter": it, "kind": "train", "loss": 1 / i + rng.random() * 0.01, "loss_l1": 0.5 / i, "loss_perceptual": 0.01 / i,
                     "loss_gan": 0.001, "lr": 1e-4, "lr_scale": 1.0, "batch_size": 32, "grad_norm": rng.random(), "samples_s": 900.0,
                     "it_s": 28.0, "peak_vram_gib": 11.0, "dynamic_weight_l1": 1.0, "dynamic_weight_perceptual": 0.5,
                     "dynamic_weight_gan": 0.1, "grad_clip_threshold": 1.0})
        if i % 20 == 0:
            rows.append({"iter": it, "kind": "val", "psnr": 30 + i / 1000, "ssim": 0.8 + i / 100000})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    events = []
    for k in range(20_000):
        it = k * 10
        key = ["loss_weight.l1", "loss_weight.perceptual", "loss_weight.gan"][k % 3] if k % 50 else f"knob_{k % 7}"
        events.append({"iter": it, "time": T0 + it / 28, "source": "automation", "key": key, "old": 1.0, "new": 1.0 + k / 1e5,
                       "reason": "dynamic loss scheduling"})
    (run / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (run / "config.yml").write_text("name: big\nscale: 4\nnetwork_g: {type: paragonsr2_s}\ntrain: {total_iter: 200000}\n")
    started = time.perf_counter()
    result = runner.invoke(app, ["report", str(run)])
    elapsed = time.perf_counter() - started
    assert result.exit_code == 0, result.output
    size = (run / "report.html").stat().st_size
    assert elapsed < 5.0, elapsed
    assert size < 5_000_000, size
    assert "finished" in result.output


def test_unreadable_files_are_named_even_as_root(tmp_path):
    run = fake_run(tmp_path / "r")
    for name in ("events.jsonl", "config.yml"):
        (run / name).unlink()
        (run / name).mkdir()  # reading it fails with an OSError, whoever runs the test
    result = runner.invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    assert "cannot read events.jsonl" in result.output and "config.yml: cannot read" in result.output and "34.0000" in result.output
    assert "100 of ?" in result.output  # without config.yml the planned length is unknown, and said so


CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome") if os.path.exists(p)), None)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here (Debian: apt-get install chromium)")
def test_the_page_opens_in_a_real_browser(tmp_path):
    """Headless Chromium renders report.html to a PNG that is not blank (charts, text, colour)."""
    import subprocess

    from PIL import Image, ImageStat

    fake_run(tmp_path / "run")
    assert runner.invoke(app, ["report", str(tmp_path / "run")]).exit_code == 0
    png = tmp_path / "page.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,1600", f"--screenshot={png}",
                    (tmp_path / "run" / "report.html").as_uri()], capture_output=True, timeout=120)
    image = Image.open(png).convert("RGB")
    spread = ImageStat.Stat(image).stddev
    assert image.size == (1200, 1600) and min(spread) > 10  # a blank page has no spread
    colours = image.convert("P", palette=Image.Palette.ADAPTIVE, colors=32).getcolors()
    assert colours is not None and len(colours) > 8  # text, grid, several series colours


def test_a_budget_refit_length_is_the_planned_one(tmp_path):
    fake_run(tmp_path / "run", total=100, iters=10)
    events = tmp_path / "run" / "events.jsonl"
    with events.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"iter": 5, "time": time.time(), "source": "trainer", "key": "train.total_iter",
                                 "old": 100, "new": 10, "reason": "time budget re-fit"}) + "\n")
    summary = summarize(load_run(tmp_path / "run"))
    assert summary["iterations"]["planned"] == 10


# ---- pictures: validation crops at the best checkpoint --------------------------------------------


@pytest.fixture(scope="module")
def real_run(tmp_path_factory, pair_set):
    """A short real CPU run (nano, ×2) with a 3-image validation set of its own."""
    from autosr.init_cmd import run_init
    from autosr.synthetic import write_pairs
    from autosr.train_cmd import train_from_file

    root = tmp_path_factory.mktemp("crops")
    val_gt, val_lq = write_pairs(root / "val", 3, scale=2, size=(256, 192), seed=100)
    hr, lr = pair_set
    run_init(gt=hr, lq=lr, arch="paragonsr2_nano", val_gt=val_gt, val_lq=val_lq, output=root / "cfg.yml", name="t", scale=None,
             overrides=["train.total_iter=10", "val.val_freq=10", "logger.save_checkpoint_freq=10", "datasets.train.lq_size=32",
                        "datasets.train.batch_size_per_gpu=4", "datasets.train.accum_iter=1", "train.warmup_iter=2",
                        "logger.print_freq=5"],
             flavor="fork", force=True, print_only=False, explain=False, sample=64)
    assert train_from_file(root / "cfg.yml", out_dir=root / "runs", resume=None, overrides=[], dry_run=False, quiet=True) == 0
    return root / "runs" / "t", val_gt


def _copy_run(src, dst):
    import shutil

    shutil.copytree(src, dst)
    (dst / "report.html").unlink(missing_ok=True)
    return dst


@pytest.mark.slow
def test_pictures_show_best_and_worst_crops(real_run):
    import re

    import yaml

    from autosr.report.crops import build_crops

    run, _ = real_run
    assert (run / "models" / "net_g_best.safetensors").is_file()
    started = time.perf_counter()
    result = runner.invoke(app, ["report", str(run)])
    elapsed = time.perf_counter() - started
    assert result.exit_code == 0, result.output
    page = (run / "report.html").read_text()
    assert "<h2>Pictures</h2>" in page and "image-rendering:pixelated" in page
    section = page[page.index("<h2>Pictures</h2>"):page.index("<h2>Decisions")]
    rows = re.findall(r"<tr>((?:<td><img[^>]*>[^<]*</td>){4})</tr>", section)
    assert len(rows) >= 2, section[:2000]  # the best crop(s) and the worst one
    for row in rows:
        assert row.count('src="data:image/png;base64,') == 4
        assert [t in row for t in ("LR (nearest)", "bicubic", "autosr", "HR")] == [True] * 4
    assert "gains most over bicubic" in section or "loses least to bicubic" in section
    assert "loses most to bicubic" in section or "gains least over bicubic" in section
    assert re.search(r"img_000\d at x=\d+, y=\d+ \(128×128 HR px\) · bicubic \d+\.\d\d dB · <span[^>]*>autosr \d+\.\d\d dB", section)
    assert "http://" not in section and "https://" not in section  # nothing fetched from the network
    assert len(page) < 1_500_000, len(page)
    assert elapsed < 30, elapsed  # the CPU model ran on crops only
    crops = build_crops(run, yaml.safe_load((run / "config.yml").read_text()))
    assert crops.missing == [] and crops.images == 3 and len(crops.rows) >= 2
    for r in crops.rows:  # the label's PSNR is the crop's: a 128 px panel of each image
        assert all(p.startswith(b"\x89PNG") for p in r.panels) and r.size == 128
    no_images = render_html(load_run(run), images=False)
    assert "<h2>Pictures</h2>" not in no_images and "data:image/png" not in no_images


@pytest.mark.slow
def test_pictures_say_what_is_missing(real_run, tmp_path):
    import shutil

    import yaml

    run, _ = real_run
    no_models = _copy_run(run, tmp_path / "no_models")

    shutil.rmtree(no_models / "models")
    result = runner.invoke(app, ["report", str(no_models)])
    assert result.exit_code == 0, result.output
    page = (no_models / "report.html").read_text()
    assert "No pictures: what is missing" in page and "no model file in" in page and "data:image/png" not in page
    assert "<svg" in page and "Decisions" in page  # the rest still renders

    moved = _copy_run(run, tmp_path / "moved")
    config = yaml.safe_load((moved / "config.yml").read_text())
    config["datasets"]["val"]["dataroot_gt"] = str(tmp_path / "deleted" / "hr")
    config["datasets"]["val"]["dataroot_lq"] = str(tmp_path / "deleted" / "lr")
    (moved / "config.yml").write_text(yaml.safe_dump(config))
    result = runner.invoke(app, ["report", str(moved)])
    assert result.exit_code == 0, result.output
    page = (moved / "report.html").read_text()
    assert "No pictures: what is missing" in page and "validation images unreadable" in page and "deleted" in page

    broken = _copy_run(run, tmp_path / "broken")
    for f in (broken / "models").glob("*.safetensors"):
        f.write_bytes(b"not a model")
    page = render_html(load_run(broken))
    assert "model file unreadable" in page and "<svg" in page

    page = render_html(load_run(fake_run(tmp_path / "fake")))  # hand-made: no validation set in config.yml
    assert "no validation set in config.yml" in page


@pytest.mark.slow
def test_pictures_without_torch_say_so(real_run, tmp_path, monkeypatch):
    import builtins

    run, _ = real_run
    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("No module named 'torch'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    page = render_html(load_run(run))
    assert "pictures need torch" in page and "<svg" in page


def test_the_page_is_written_before_the_summary_is_printed(tmp_path):
    """`autosr report RUN | head` closes the pipe early: the page must already be on disk."""
    from rich.console import Console

    from autosr.report.summary import report

    class ClosedPipe:
        def write(self, text):
            raise BrokenPipeError

        def flush(self):
            pass

    run = fake_run(tmp_path / "r")
    with pytest.raises((BrokenPipeError, SystemExit)):  # rich turns a broken pipe into an exit
        report(run, console=Console(file=ClosedPipe()), images=False)
    assert (run / "report.html").read_text().startswith("<!")


def test_json_beside_a_page_keeps_stdout_one_document(tmp_path, capsys):
    from autosr.report.summary import report

    run = fake_run(tmp_path / "r")
    report(run, as_json=True, html_path=tmp_path / "page.html", images=False)
    captured = capsys.readouterr()
    assert json.loads(captured.out)["schema"] == SCHEMA and "report: " in captured.err
    assert (tmp_path / "page.html").is_file()
