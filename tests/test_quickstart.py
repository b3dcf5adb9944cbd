"""The newcomer's first command, end to end on the shipped digits teacher (slow: ~1 min on one core)."""

import json

import pytest

from sidbench.cli import main


@pytest.mark.slow
def test_quickstart_end_to_end_and_resume(tmp_path, capsys):
    out = tmp_path / "qs"
    assert main(["quickstart", "--out", str(out), "--num-images", "1000", "--batch-size", "250"]) == 0
    first = json.loads((out / "results.json").read_text())
    many, few = first["records"]
    assert many["method"]["nfe"] == 35 and few["method"]["nfe"] == 3
    for rec in (many, few):
        assert rec["provenance"] == "measured" and rec["suite"]["name"] == "digits"
        assert {"fid", "is", "kid", "precision", "recall"} <= set(rec["metrics"])
        assert rec["metrics"]["fid"]["protocol"]["name"] == "digits-fd"
        assert rec["metrics"]["fid"]["num_images"] == 1000
    # the shipped teacher is good at its suite's steps and the metrics see the few-step gap
    assert many["metrics"]["fid"]["value"] < 0.1 * few["metrics"]["fid"]["value"]
    assert many["metrics"]["is"]["value"] > 8.5 > few["metrics"]["is"]["value"]
    assert many["metrics"]["precision"]["value"] > few["metrics"]["precision"]["value"]

    # rerun: every image is reused and every number is identical
    assert main(["quickstart", "--out", str(out), "--num-images", "1000", "--batch-size", "100"]) == 0
    second = json.loads((out / "results.json").read_text())
    for a, b in zip(first["records"], second["records"], strict=True):
        assert b["cost"]["images_generated_now"] == 0 and b["cost"]["images_reused"] == 1000
        values = {k: v["value"] for k, v in a["metrics"].items()}
        assert values == {k: v["value"] for k, v in b["metrics"].items()}
    assert "results.json" in capsys.readouterr().out
