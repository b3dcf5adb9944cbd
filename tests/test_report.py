"""`sidbench report`: run folders made here (records, a checkpoint with a tiny product), the verdict rules
written out, the HTML self-contained and escaped, the Markdown with its images, the leaderboard table, the
sample grid against per-seed images, and bad inputs as one line. A slow test opens the page in Chromium.
"""

from __future__ import annotations

import base64
import html.parser
import io
import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import sidbench
from sidbench.jsonsafe import dumps
from sidbench.leaderboards.store import add_records
from sidbench.nets import build_network
from sidbench.nets.native import save_network
from sidbench.nets.render import render_seeds
from sidbench.records import result_record
from sidbench.reports.runs import load_run
from sidbench.reports.samples import sample_grid, tile
from sidbench.reports.verdict import FAIL, NOT_COMPARABLE, NOT_MEASURED, PASS, judge
from sidbench.train.checkpoint import write_checkpoint
from tests._cli import run_cli

SHA = "e" * 64
PAPER = {"paper": "A paper", "arxiv": "2404.04057", "table": "Table 1", "metric": "fid",
         "protocol": "digits-fd", "value": 50.0, "tolerance": 5.0, "source": "code"}
TINY = {"class_name": "EDMPrecond", "init_kwargs": dict(
    img_resolution=16, img_channels=1, label_dim=10, model_type="SongUNet", model_channels=8,
    channel_mult=[1, 2], num_blocks=1, attn_resolutions=[], augment_dim=0, dropout=0.0)}


# --- fabricated runs -----------------------------------------------------------------------------

def _entry(value, protocol="digits-fd", full=True, lower=True, images=2000):
    return {"value": value, "protocol": {"name": protocol, "version": "1.0.0"}, "num_images": images,
            "full_protocol": full,
            "protocol_deviations": [] if full else ["500 images, the protocol uses 2000"],
            "extractor_sha256": SHA, "reference_sha256": SHA, "lower_is_better": lower, "seeds": "0-1999"}


def make_record(name, kimg, fid=None, *, is_=None, config_hash="ab" * 32, full=True, device_hours=None,
                wall=None, label=None):
    metrics = {}
    if fid is not None:
        metrics["fid"] = _entry(fid, full=full, images=2000 if full else 500)
    if is_ is not None:
        metrics["is"] = _entry(is_, protocol="digits-is", lower=False)
    wall = wall if wall is not None else 36.0 * (kimg + 0.1)
    cost = {"wall_seconds": wall, "device_hours": device_hours if device_hours is not None else wall / 3600}
    return result_record(suite={"name": "digits", "version": "1.0.0"},
                         method={"name": "sid", "version": "1.0.0", "label": label or name,
                                 "role": "generator", "nfe": 1},
                         metrics=metrics, networks={"teacher_sha256": SHA, "reference_stats_sha256": SHA},
                         environment={"torch": "2.14", "device": "cpu", "processes": 1, "batch_per_gpu": 32},
                         cost=cost, config_hash=config_hash,
                         extra={"kimg": kimg, "step": int(kimg * 100), "run": name})


def tiny_product(seed=0):
    net = build_network(TINY)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # wake the zero-initialised output layers so the images depend on the seed
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.5 / math.sqrt(max(1, p[0].numel()))))
    return net.eval()


def make_run(folder: Path, name="sid-digits", curve=((0.0, 180.0), (0.8, 64.0), (1.6, 52.0)), *, expected=(),
             checkpoint=True, full=True, is_=None, records=None, config_hash="ab" * 32):
    """A run folder as the trainer writes it: config.json, metrics.jsonl, one checkpoint with a product."""
    folder.mkdir(parents=True)
    config = {"name": name, "suite": "digits", "suite_version": "1.0.0", "method": "sid",
              "method_version": "1.0.0", "expected": list(expected), "recipe": "recipes/sid-digits.yaml"}
    (folder / "config.json").write_text(dumps({"config": config, "config_hash": config_hash}) + "\n")
    if records is None:
        records = [make_record(name, k, v, is_=(is_[i] if is_ else None), full=full, config_hash=config_hash)
                   for i, (k, v) in enumerate(curve)]
    (folder / "metrics.jsonl").write_text("".join(dumps(r, indent=None) + "\n" for r in records))
    (folder / "log.jsonl").write_text(json.dumps({"step": 5, "kimg": 0.16, "time_s": 1.0}) + "\n")
    if checkpoint:
        net = tiny_product()
        write_checkpoint(folder, 160, networks={"generator": net}, optimizer_tensors={"x": torch.zeros(1)},
                         optimizer_meta={}, state={"kimg": 1.6},
                         write_product=lambda p: save_network(net, TINY, p, role="generator", sigma_init=2.5))
    return folder


@pytest.fixture
def board(tmp_path):
    root = tmp_path / "boards"
    rows = [make_record("baseline-a", 2.0, 10.0, label="baseline-a"),
            make_record("baseline-b", 2.0, 30.0, label="baseline-b")]
    add_records(root, "digits", rows, created="2026-01-01T00:00:00+00:00")
    return root


def _data_pngs(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


class _Balance(html.parser.HTMLParser):
    """Every non-void element closed in order: the page is well formed."""

    VOID = {"meta", "img", "br", "hr", "link", "input", "source"}

    def __init__(self):
        super().__init__()
        self.stack, self.errors = [], []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
        else:
            self.stack.pop()


# --- verdicts --------------------------------------------------------------------------------------

@pytest.mark.parametrize("measured, full, protocol, status, words", [
    (52.5, True, "digits-fd", PASS, "within"),          # |52.5 - 50| = 2.5 <= 5
    (55.0, True, "digits-fd", PASS, "within"),          # exactly at the tolerance: passes
    (55.5, True, "digits-fd", FAIL, "worse than the paper by 5.5"),
    (43.0, True, "digits-fd", FAIL, "better than the paper by 7"),
    (52.5, False, "digits-fd", NOT_COMPARABLE, "500 images"),
    (52.5, True, "edm-fid50k", NOT_COMPARABLE, "measured under edm-fid50k"),
    (math.nan, True, "digits-fd", FAIL, "nan"),
])
def test_verdict_follows_the_tolerance_protocol_and_image_count(measured, full, protocol, status, words):
    rec = make_record("r", 1.0, 1.0)
    rec["metrics"]["fid"] = {**_entry(measured, protocol=protocol, full=full)}
    v = judge(PAPER, rec)
    assert v.status == status and words in v.reason, v
    if status in (PASS, FAIL) and math.isfinite(measured):
        assert v.delta == measured - 50.0


def test_verdict_of_a_higher_is_better_metric_and_missing_pieces():
    rec = make_record("r", 1.0, 60.0, is_=8.0)
    is_paper = {**PAPER, "metric": "is", "protocol": "digits-is", "value": 9.0, "tolerance": 0.5}
    v = judge(is_paper, rec)
    assert v.status == FAIL and "worse than the paper by 1" in v.reason  # IS 8 < 9: worse, higher is better
    assert judge({**is_paper, "value": 8.25}, rec).status == PASS
    assert judge({**PAPER, "metric": "kid"}, rec).status == NOT_MEASURED
    assert judge(PAPER, None).status == NOT_MEASURED
    no_tol = {k: v for k, v in PAPER.items() if k != "tolerance"}
    assert judge(no_tol, rec).status == NOT_COMPARABLE and "tolerance" in judge(no_tol, rec).reason


# --- run folders --------------------------------------------------------------------------------------

def test_a_run_reads_its_curve_best_and_newest_checkpoint(tmp_path):
    run = load_run(make_run(tmp_path / "r", curve=((0.0, 180.0), (0.8, 40.0), (1.6, 52.0))))
    assert [(k, v) for k, v, _ in run.curve("fid")] == [(0.0, 180.0), (0.8, 40.0), (1.6, 52.0)]
    assert run.best("fid") == (40.0, 0.8) and run.last["kimg"] == 1.6
    assert run.checkpoint.step == 160 and (run.checkpoint.product / "network.json").is_file()


def test_a_corrupt_newest_checkpoint_is_skipped_for_an_older_one(tmp_path):
    folder = make_run(tmp_path / "r")
    net = tiny_product(1)
    write_checkpoint(folder, 320, networks={"generator": net}, optimizer_tensors={"x": torch.zeros(1)},
                     optimizer_meta={}, state={"kimg": 3.2},
                     write_product=lambda p: save_network(net, TINY, p, role="generator"))
    weights = folder / "checkpoints" / "step-00000320" / "product" / "network.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    run = load_run(folder)
    assert run.checkpoint.step == 160 and "does not match its sha256" in run.skipped_checkpoints[0]


# --- the HTML page -------------------------------------------------------------------------------------

def test_html_report_holds_every_plot_and_references_nothing_outside(tmp_path, board):
    a = make_run(tmp_path / "a", expected=[{**PAPER, "note": "see https://example.org/released.pkl"}],
                 is_=(2.0, 8.0, 9.0))
    b = make_run(tmp_path / "b", name='<script>alert("x")</script> & co', curve=((0.0, 150.0), (1.6, 20.0)))
    out = tmp_path / "rep" / "report.html"
    result = sidbench.report([a, b], out=out, leaderboard="digits", root=board, grid=4, device="cpu")
    page = out.read_text(encoding="utf-8")
    figures = result["figures"]
    assert {"fid-vs-kimg", "is-vs-kimg", "fid-vs-cost"} <= set(figures)
    assert sum(f.startswith("samples-") for f in figures) == 2
    pngs = _data_pngs(page)
    assert len(pngs) == len(figures) == page.count("<img")
    for name in figures:
        assert f'id="fig-{name}"' in page
    for data in pngs:
        Image.open(io.BytesIO(data)).verify()
    assert not re.search(r"https?://", page, re.IGNORECASE)
    assert "example.org/released.pkl" in page  # the URL's text stays, without its scheme
    assert not re.search(r"<script|<link|@import|url\(|<iframe", page, re.IGNORECASE)
    assert all(src.startswith("data:image/png;base64,") for src in re.findall(r'src="([^"]*)"', page))
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co" in page
    checker = _Balance()
    checker.feed(page)
    assert not checker.errors and not checker.stack, (checker.errors, checker.stack)
    # the verdict: newest FD 52 against the paper's 50 +- 5, full protocol -> pass
    assert [(v["run"], v["status"]) for v in result["verdicts"]] == [("sid-digits", PASS)]
    assert 'class="v-pass"><span class="badge">pass</span>' in page


def test_the_leaderboard_table_puts_the_runs_newest_row_in_its_place(tmp_path, board):
    run = make_run(tmp_path / "a", curve=((0.0, 180.0), (1.6, 20.0)))
    out = tmp_path / "report.md"
    sidbench.report([run], out=out, leaderboard="digits", root=board, grid=0)
    text = out.read_text(encoding="utf-8")
    lines = text.split("## Leaderboard: digits", 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| rank |"))
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
    rows = lines[start + 2:end]
    labels = [line.split(" | ")[1] for line in rows]
    assert labels == ["baseline-a", "\u25b6 sid-digits", "baseline-b"]  # 10 < 20 (ours) < 30, lower is better
    assert rows[0].split(" | ")[5] == "**10**"  # the best FD is bold


def test_markdown_report_writes_its_images_beside_it(tmp_path):
    run = make_run(tmp_path / "a", name="a|b", expected=[{**PAPER, "protocol": "edm-fid50k"}])
    out = tmp_path / "out" / "report.md"
    result = sidbench.report(run, out=out, grid=2)
    text = out.read_text(encoding="utf-8")
    folder = tmp_path / "out" / "report_files"
    assert sorted(p.stem for p in folder.iterdir()) == sorted(result["figures"])
    for name in result["figures"]:
        assert f"](report_files/{name}.png)" in text
        Image.open(folder / f"{name}.png").verify()
    assert "a\\|b" in text and not re.search(r"https?://", text)
    assert "not comparable" in text and result["verdicts"][0]["status"] == NOT_COMPARABLE
    other = make_run(tmp_path / "b", name="b", checkpoint=True)
    sidbench.report([run, other], out=out, grid=2)
    assert (folder / "samples-2-b.png").is_file()
    sidbench.report(run, out=out, grid=2)  # a second report at the same path: no stale figure left
    assert sorted(p.stem for p in folder.iterdir()) == sorted(result["figures"])
    text = out.read_text(encoding="utf-8")
    header = next(line for line in text.splitlines() if line.startswith("| run | metric"))
    verdict_row = next(line for line in text.splitlines()
                       if "not comparable" in line and line.startswith("| a"))
    assert len(re.split(r"(?<!\\)\|", verdict_row)) == len(re.split(r"(?<!\\)\|", header))


def test_cost_is_in_device_hours_and_falls_back_to_wall_clock(tmp_path):
    run = make_run(tmp_path / "a")
    out = tmp_path / "r.html"
    sidbench.report(run, out=out, grid=0)
    assert "in device-hours" in out.read_text()
    recs = [make_record("w", 0.0, 100.0), make_record("w", 1.0, 50.0)]
    recs[1]["cost"]["device_hours"] = None
    wall = make_run(tmp_path / "w", name="w", records=recs)
    sidbench.report(wall, out=out, grid=0)
    assert "wall-clock hours (a record lacks device-hours" in out.read_text()


# --- sample grids --------------------------------------------------------------------------------------

def test_tile_places_images_row_major_with_padding():
    images = np.arange(6, dtype=np.uint8).reshape(6, 1, 1, 1) * 40
    grid = tile(images, columns=3, pad=1, min_width=0)
    assert grid.shape == (1, 2 * 1 + 3, 3 * 1 + 4)
    for i in range(6):
        r, c = divmod(i, 3)
        assert grid[0, 1 + r * 2, 1 + c * 2] == i * 40
    assert grid[0, 0, 0] == 128 and grid[0, 2, 2] == 128  # padding
    assert tile(images, columns=3, pad=1, min_width=70).shape == (1, 2 * 10 + 3, 3 * 10 + 4)  # scaled x10


def test_sample_grid_tiles_are_the_per_seed_images(tmp_path):
    net = tiny_product()
    save_network(net, TINY, tmp_path / "p", role="generator", sigma_init=2.5)
    grid = sample_grid(tmp_path / "p", n=3, device="cpu")
    image = np.asarray(Image.open(io.BytesIO(grid.png)))
    scale = math.ceil(384 / (3 * 16 + 4 * 2))
    for seed in range(9):
        r, c = divmod(seed, 3)
        want = render_seeds(net, [seed], "onestep", "cpu", class_idx=r % 10, sigma_init=2.5)[0, 0]
        y, x = 2 + r * (16 * scale + 2), 2 + c * (16 * scale + 2)
        got = image[y:y + 16 * scale:scale, x:x + 16 * scale:scale]
        np.testing.assert_array_equal(got, want)
    assert grid.seeds == "0-8" and "class r mod 10" in grid.caption


def test_point_suites_are_scattered_and_teacher_products_use_the_suites_heun(tmp_path):
    from sidbench.registry import SUITES
    from sidbench.suites.toy2d import TEACHER_NETWORK

    save_network(build_network(TEACHER_NETWORK).eval(), TEACHER_NETWORK, tmp_path / "pts", role="generator")
    points = sample_grid(tmp_path / "pts", n=2, device="cpu")
    assert points.points and points.seeds == "0-63" and Image.open(io.BytesIO(points.png)).size[0] > 100
    net = tiny_product()
    save_network(net, TINY, tmp_path / "t", role="teacher")
    digits = SUITES.get("digits")
    grid = sample_grid(tmp_path / "t", n=1, suite=digits, device="cpu")
    heun = {"num_steps": digits.teacher.heun_steps, "sigma_min": digits.teacher.sigma_min,
            "sigma_max": digits.teacher.sigma_max, "rho": digits.teacher.rho}
    want = render_seeds(net, [0], "heun", "cpu", class_idx=0, heun=heun)[0, 0]
    scale = math.ceil(384 / (16 + 2 * 2))
    got = np.asarray(Image.open(io.BytesIO(grid.png)))[2:2 + 16 * scale:scale, 2:2 + 16 * scale:scale]
    np.testing.assert_array_equal(got, want)
    assert grid.sampler == "heun" and f"{digits.teacher.heun_steps} steps" in grid.caption


# --- bad inputs: one line, before any work --------------------------------------------------------------

def _one_line(err):
    assert err.count("\n") == 1 and "Traceback" not in err, err


@pytest.mark.parametrize("make, words", [
    ("empty", "is not a training run folder: it has no config.json"),
    ("missing", "does not exist"),
    ("file", "is a file, not a run folder"),
    ("bad-config", "is not a run's config"),
    ("foreign-record", "is a record of config"),
    ("bad-record", "metrics.fid.value: expected"),
    ("nothing", "nothing to report"),
])
def test_a_folder_that_is_not_a_run_is_one_line(make, words, tmp_path, capsys):
    folder = tmp_path / "r"
    if make == "empty":
        folder.mkdir()
    elif make == "file":
        folder.write_text("x")
    elif make == "bad-config":
        folder.mkdir()
        (folder / "config.json").write_text('{"name": "x"}')
    elif make == "foreign-record":
        make_run(folder, checkpoint=False, records=[make_record("x", 0.0, 1.0, config_hash="cd" * 32)])
    elif make == "bad-record":
        make_run(folder, checkpoint=False)
        line = json.loads((folder / "metrics.jsonl").read_text().splitlines()[0])
        line["metrics"]["fid"]["value"] = "abc"
        (folder / "metrics.jsonl").write_text(json.dumps(line) + "\n" + json.dumps(line) + "\n")
    elif make == "nothing":
        make_run(folder, checkpoint=False, records=[])
    rc, _, err = run_cli(["report", folder, "--out", tmp_path / "r.html"], capsys)
    assert rc == 1 and words in err, err
    _one_line(err)
    assert not (tmp_path / "r.html").exists()


def test_unknown_leaderboard_wrong_suffix_and_repeated_runs_are_one_line(tmp_path, board, capsys,
                                                                          monkeypatch):
    import sidbench.reports.build as build

    def boom(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(build, "build_content", boom)
    run = make_run(tmp_path / "a", checkpoint=False)
    cases = [(["--leaderboard", "digitz", "--root", board], "no leaderboard for suite 'digitz'"),
             (["--out", tmp_path / "r.json"], "written as HTML or Markdown"),
             (["--grid", "64"], "--grid 64 is more than 32")]
    for extra, words in cases:
        argv = ["report", run, *(["--out", tmp_path / "r.html"] if "--out" not in extra else []), *extra]
        rc, _, err = run_cli(argv, capsys)
        assert rc == 1 and words in err, err
        _one_line(err)
    assert "Did you mean 'digits'" in run_cli(["report", run, "--out", tmp_path / "r.html", "--leaderboard",
                                                 "digitz", "--root", board], capsys)[2]
    rc, _, err = run_cli(["report", run, tmp_path / "a", "--out", tmp_path / "r.html"], capsys)
    assert rc == 1 and "is given twice" in err
    (tmp_path / "r_files").write_text("a file where the images go")
    rc, _, err = run_cli(["report", run, "--out", tmp_path / "r.md"], capsys)
    assert rc == 1 and "r_files is an existing file" in err
    _one_line(err)


def test_cli_prints_the_verdicts_and_where_the_report_is(tmp_path, capsys):
    run = make_run(tmp_path / "a", checkpoint=False, expected=[PAPER])
    rc, out, _ = run_cli(["report", run, "--out", tmp_path / "r.html", "--grid", "0"], capsys)
    assert rc == 0 and "sid-digits: fid pass" in out and str(tmp_path / "r.html") in out


# --- the page in a browser -----------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium (Debian package `chromium`) is not installed")
def test_the_page_loads_in_headless_chromium_without_console_errors(tmp_path, board):
    a = make_run(tmp_path / "a", expected=[PAPER], is_=(2.0, 8.0, 9.0))
    b = make_run(tmp_path / "b", name="sid-digits-2", curve=((0.0, 150.0), (1.6, 20.0)))
    page = tmp_path / "report.html"
    result = sidbench.report([a, b], out=page, leaderboard="digits", root=board, grid=8, device="cpu")
    shot = tmp_path / "shot.png"
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run",
            f"--user-data-dir={tmp_path / 'ud'}", "--enable-logging=stderr", "--v=0",
            "--window-size=1200,2000"]
    shot_run = subprocess.run([*base, f"--screenshot={shot}", page.as_uri()], capture_output=True, text=True,
                              timeout=120)
    dom_run = subprocess.run([*base, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                             timeout=120)
    logs = shot_run.stderr + dom_run.stderr
    console = [line for line in logs.splitlines() if "CONSOLE" in line or "Uncaught" in line
               or "Failed to load resource" in line or "net::ERR" in line]
    assert shot_run.returncode == 0 and dom_run.returncode == 0, logs[-2000:]
    assert not console, console
    image = Image.open(shot)
    assert image.size == (1200, 2000)
    pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 10  # something was drawn, not a blank page
    dom = dom_run.stdout
    assert dom.count("<img") == len(result["figures"]) == 5
    assert "Measured vs paper" in dom and "Leaderboard: digits" in dom
    # responsive: on a phone-wide window nothing but the tables' own scrollers is wider than the page
    probe = tmp_path / "probe.html"
    js = ("<script>const d = document.documentElement; addEventListener('load', () => "
          "console.log('widths ' + d.scrollWidth + ' ' + d.clientWidth))</script>")
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", js + "</body>"), encoding="utf-8")
    narrow = [a if not a.startswith("--window-size") else "--window-size=420,2000" for a in base]
    run = subprocess.run([*narrow, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    widths = re.search(r"widths (\d+) (\d+)", run.stderr)
    assert widths and widths.group(1) == widths.group(2), run.stderr[-2000:]
