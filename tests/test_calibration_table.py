"""The calibration table: rungs summarised from their records, the recipe chosen by validation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from deepm3.cli import main
from deepm3.reporting import calibration
from deepm3.reporting.records import read_all
from deepm3.suite.report import calibration_section

RECORD = Path(__file__).parents[1] / "results/amazon/amazon-beauty/core/runs/sasrec-s0"


def rung(root: Path, model: str, name: str, scores: list[tuple[float, float]]) -> None:
    """A rung of committed-record copies whose (valid, test) NDCG@10 are ``scores``."""
    for seed, (valid, test) in enumerate(scores):
        folder = root / model / name / "runs" / f"{model}-s{seed}"
        shutil.copytree(RECORD, folder)
        metrics = json.loads((folder / "metrics.json").read_text())
        metrics["valid"]["ndcg@10"], metrics["test"]["ndcg@10"] = valid, test
        (folder / "metrics.json").write_text(json.dumps(metrics))


def test_the_recipe_is_chosen_by_validation_never_by_test(tmp_path):
    rung(tmp_path, "sasrec", "r1", [(0.050, 0.040), (0.052, 0.042), (0.051, 0.041)])
    rung(tmp_path, "sasrec", "r2", [(0.045, 0.060), (0.046, 0.061), (0.044, 0.059)])
    rung(tmp_path, "gru4rec", "r1", [(0.090, 0.090)])  # another model never counts for SASRec
    rungs = calibration.ladder(tmp_path)
    assert list(zip(rungs["model"], rungs["rung"], strict=True)) == [
        ("gru4rec", "r1"),
        ("sasrec", "r1"),
        ("sasrec", "r2"),
    ]
    r1 = rungs[(rungs["model"] == "sasrec") & (rungs["rung"] == "r1")].iloc[0]
    assert r1["test"] == pytest.approx(np.mean([0.040, 0.042, 0.041]))
    assert r1["test_sd"] == pytest.approx(np.std([0.040, 0.042, 0.041], ddof=1))
    assert calibration.chosen_rung(rungs, "sasrec")["rung"] == "r1"
    said = calibration.verdict(rungs)
    assert "rung `r1`" in said and f"below the target {calibration.TARGET}" in said


def test_the_table_reads_the_target_and_counts_seeds(tmp_path):
    rung(tmp_path / "ladder", "sasrec", "r4", [(0.05, 0.046), (0.05, 0.044)])
    rung(tmp_path / "ladder", "gru4rec", "r6", [(0.04, 0.037)])
    out = tmp_path / "calibration.md"
    code = main(
        ["calibration", str(tmp_path / "ladder"), "--dataset", "amazon-beauty", "--out", str(out)]
    )
    assert code == 0
    text = out.read_text()
    assert "| SASRec+SS |" in text and "0.0531" in text  # the published rows of Beauty
    assert "0.0450 ± 0.0014" in text  # mean and sample sd of 0.046 and 0.044
    gru4rec = next(line for line in text.splitlines() if line.startswith("| gru4rec | r6 |"))
    assert "| 0.0370 (1 seed) |" in gru4rec and "±" not in gru4rec  # one seed has no spread
    assert "reaches the target 0.043, short of the goal 0.050" in text
    assert "Only 2 seed(s)" in text


def test_a_suite_report_carries_the_calibration_verdict_when_the_table_exists(tmp_path):
    assert calibration_section(tmp_path, "amazon-beauty", [], False) == ""  # no ladder yet
    rung(tmp_path / "ladder", "sasrec", "r4", [(0.05, 0.046)])
    calibration.write(tmp_path / "ladder", "amazon-beauty", tmp_path / calibration.FILE)
    section = calibration_section(tmp_path, "amazon-beauty", [], False)
    assert section.startswith("## Calibration")
    assert "[calibration.md](calibration.md)" in section
    assert "rung `r4`" in section and "reaches the target 0.043" in section
    assert "test NDCG@10 0.0460 over 1 seed" in section  # one seed: no spread shown


def test_a_suite_reports_own_sasrec_is_set_against_the_published_numbers(tmp_path):
    """The report's core SASRec runs, summarised from their records (mean and sample sd
    computed here), sit under the published rows of the same split and beside the ladder's
    chosen rung, with the target read on the report's own mean; a ladder recipe that scores
    higher on validation is named as one the search did not find."""
    rung(tmp_path / "core", "sasrec", "searched", [(0.054, 0.047), (0.053, 0.046), (0.055, 0.049)])
    core = read_all(tmp_path / "core" / "sasrec" / "searched" / "runs")
    rung(tmp_path / "ladder", "sasrec", "r7", [(0.057, 0.051), (0.056, 0.052)])
    rows, said = calibration.suite_rows("amazon-beauty", core, "this report", tmp_path / "ladder")
    ours = rows.iloc[-2]
    expected = np.array([0.047, 0.046, 0.049])
    assert ours["NDCG@10"] == f"{expected.mean():.4f} ± {expected.std(ddof=1):.4f}"
    assert "valid NDCG@10 0.0540" in ours["source"]
    assert rows.iloc[-1]["model"] == "SASRec (ours, ladder rung r7)"
    assert rows.iloc[-1]["NDCG@10"] == "0.0515 ± 0.0007"
    assert "0.0531" in set(rows["NDCG@10"])  # the published SASRec+SS row stays
    assert "reaches the target 0.043, short of the goal 0.050" in said
    assert "did not find that recipe" in said

    section = calibration_section(tmp_path / "ladder", "amazon-beauty", core, True)
    assert "| SASRec (ours, this report) |" in section and "0.0473 ± 0.0015" in section
    assert calibration.suite_rows("ml-1m", core, "this report", None)[1] == ""
    subset = calibration_section(tmp_path / "nothing", "ml-1m", core, True)
    assert "No published number on this split (ml-1m)" in subset
    assert calibration_section(tmp_path / "nothing", "ml-1m", core, False) == ""
    assert calibration_section(tmp_path / "nothing", "amazon-beauty", core, False) == ""  # quick
