"""The newcomer's first command, end to end on the shipped digits teacher (slow: minutes on one core)."""

import copy
import json

import pytest

from sidbench.cli import main


@pytest.mark.slow
def test_quickstart_end_to_end_and_resume(tmp_path, capsys):
    out = tmp_path / "qs"
    assert main(["quickstart", "--out", str(out), "--num-images", "1000", "--batch-size", "250",
                 "--no-distill"]) == 0
    first = json.loads((out / "results.json").read_text())
    many, few = first["records"]
    assert many["method"]["nfe"] == 35 and few["method"]["nfe"] == 3
    for rec in (many, few):
        assert rec["source"] == "measured" and rec["suite"]["name"] == "digits"
        assert {"fid", "is", "kid", "precision", "recall"} <= set(rec["metrics"])
        assert rec["metrics"]["fid"]["protocol"]["name"] == "digits-fd"
        assert rec["metrics"]["fid"]["num_images"] == 1000
    # the shipped teacher is good at its suite's steps and the metrics see the few-step gap
    assert many["metrics"]["fid"]["value"] < 0.1 * few["metrics"]["fid"]["value"]
    assert many["metrics"]["is"]["value"] > 8.5 > few["metrics"]["is"]["value"]
    assert many["metrics"]["precision"]["value"] > few["metrics"]["precision"]["value"]

    # rerun: every image is reused and every number is identical
    assert main(["quickstart", "--out", str(out), "--num-images", "1000", "--batch-size", "100",
                 "--no-distill"]) == 0
    second = json.loads((out / "results.json").read_text())
    for a, b in zip(first["records"], second["records"], strict=True):
        assert b["cost"]["images_generated_now"] == 0 and b["cost"]["images_reused"] == 1000
        values = {k: v["value"] for k, v in a["metrics"].items()}
        assert values == {k: v["value"] for k, v in b["metrics"].items()}
    assert "results.json" in capsys.readouterr().out


@pytest.mark.slow
def test_quickstart_distils_sid_and_sida_into_one_step_rows_and_resumes(tmp_path, capsys, monkeypatch):
    import sidbench.workflows.quickstart as qs
    from sidbench.train.config import load_recipe

    short = copy.deepcopy(qs.DISTILL_RECIPES)
    for raw in short.values():  # the quickstart's recipes, cut to 12 steps (the mechanics, not the budget)
        t = raw["training"]
        t["duration_kimg"] = 12 * t["batch"] / 1000
        t["checkpoint_kimg"] = 4 * t["batch"] / 1000
    monkeypatch.setattr(qs, "DISTILL_RECIPES", short)
    out = tmp_path / "qs"
    argv = ["quickstart", "--out", str(out), "--num-images", "1000", "--batch-size", "250"]
    assert main(argv) == 0
    first = json.loads((out / "results.json").read_text())
    labels = [r["method"]["label"] for r in first["records"]]
    assert labels == ["teacher heun-18", "teacher heun-2", "sid one-step", "sida one-step"]
    few = first["records"][1]
    for rec, name in zip(first["records"][2:], ("sid", "sida"), strict=True):
        method = rec["method"]
        assert (method["name"], method["nfe"], method["num_steps"]) == (name, 1, 1)
        assert method["config_hash"] == load_recipe(short[name]).config_hash()
        assert rec["networks"]["generator_sha256"] and rec["cost"]["train_seconds"] > 0
        assert rec["metrics"]["fid"]["num_images"] == 1000
        # one step of the distilled generator beats two Heun steps of its teacher
        assert rec["metrics"]["fid"]["value"] < few["metrics"]["fid"]["value"]
    assert (out / "sid" / "run" / "checkpoints").is_dir() and (out / "sida" / "run" / "checkpoints").is_dir()

    # rerun: training is found finished and images reused: the same numbers
    assert main(argv) == 0
    second = json.loads((out / "results.json").read_text())
    for a, b in zip(first["records"], second["records"], strict=True):
        assert b["cost"]["images_generated_now"] == 0
        values = {k: v["value"] for k, v in a["metrics"].items()}
        assert values == {k: v["value"] for k, v in b["metrics"].items()}
    assert "one-step" in capsys.readouterr().out  # the rows are printed (rich may wrap the labels)
