"""``make demo`` on epochs, not seconds: its table must be the same on every machine. And the
time it announces: ``deepm3 train --estimate`` before training, the time left on every epoch's
line during it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
from synthetic import REPO

from deepm3.cli import main
from deepm3.config import load_config
from deepm3.defaults import run_config
from deepm3.train import loop
from deepm3.train.estimate import RunEstimate, estimate_run
from deepm3.train.eta import duration, remaining_seconds, validations
from deepm3.train.run import plan_run, run

DEMO = REPO / "configs" / "demo"
TRAINED = ("deepm3", "sasrec")  # the models scripts/demo.sh trains with these files


def _demo(model: str):
    """The demo's config as ``deepm3 train --dataset ml-1m --config`` builds it (shipped
    ML-1M defaults, then the demo file)."""
    return run_config("ml-1m", model, DEMO / f"{model}.yaml")


@pytest.mark.parametrize("model", TRAINED)
def test_the_demo_trains_a_fixed_number_of_epochs_on_one_cpu_thread(model):
    config = _demo(model)
    plan_run(model, config)  # every setting valid for its model
    train = config.train
    assert train.time_budget is None  # no wall-time budget: seconds never decide the table
    # patience counts only after min_epochs: it can never stop the run, every epoch is trained
    assert train.min_epochs >= train.epochs >= 1
    assert train.num_threads == 1  # float sums do not depend on the machine's core count
    assert train.device == "cpu"  # nor on whether the machine has a GPU


def test_both_trained_models_get_the_same_data_training_and_evaluation():
    deepm3, sasrec = (_demo(model) for model in TRAINED)
    assert deepm3.train == sasrec.train  # loss, lr, epochs, early stopping, seed, threads
    assert deepm3.data == sasrec.data
    assert deepm3.eval == sasrec.eval
    assert deepm3.model["hidden_size"] == sasrec.model["hidden_size"]


def test_time_left_extrapolates_the_mean_rate_so_far():
    assert remaining_seconds(30.0, 3, 10) == pytest.approx(70.0)
    assert remaining_seconds(30.0, 10, 10) == 0.0
    assert remaining_seconds(0.0, 0, 10) == 0.0
    assert duration(42.4) == "42 s"
    assert duration(450.0) == "7.5 min"


def test_an_estimate_adds_training_and_every_evaluation():
    estimate = RunEstimate("m", 3, 10, 0.5, 3, 2.0, 1.0, 1)
    # setup 1 + 3 epochs x 10 batches x 0.5 s + (3 validations + valid and test once) x 2 s
    assert estimate.seconds == pytest.approx(1 + 15 + 10)
    assert estimate.line().endswith("(26 s)")  # scripts/demo.sh reads the seconds there


def test_an_estimate_writes_nothing_and_a_resumed_run_cannot_ask_for_one(
    synthetic_events, tmp_path, capsys
):
    csv = str(synthetic_events)
    settings = ["hidden_size=8", "max_len=10", "batch_size=8", "epochs=2"]
    args = ["train", "--dataset", csv, "--model", "gru4rec", "--out", str(tmp_path / "run")]
    assert main([*args, "--estimate", *settings]) == 0
    line = capsys.readouterr().out.strip()
    assert re.fullmatch(r"gru4rec: 2 epochs x \d+ batches x .* \(\d+ s\)", line)
    assert not (tmp_path / "run").exists()  # nothing trained, no run directory
    assert main(["train", "--resume", str(tmp_path / "run"), "--estimate"]) == 2
    assert capsys.readouterr().err.strip() == (
        "deepm3: error: --resume takes no other options or key=value settings: --estimate"
    )


def _quick(csv, *extra: str):
    settings = ["hidden_size=8", "max_len=10", "batch_size=8", "progress=false", "patience=100"]
    return load_config(
        None, [*settings, "num_threads=1", *extra], base={"data": {"dataset": str(csv)}}
    )


def test_the_estimate_counts_the_batches_and_validations_a_real_run_has(
    synthetic_events, tmp_path, monkeypatch
):
    config = _quick(synthetic_events, "epochs=5", "eval_every=2")
    estimate = estimate_run("sasrec", config, batches=2, warmup=1)
    calls = {"count": 0}
    real_loss = loop.sequence_loss

    def counted(*args, **kwargs):
        calls["count"] += 1
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(loop, "sequence_loss", counted)
    run("sasrec", config, tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").open()]
    assert estimate.epochs == len(records) == 5
    assert estimate.batches == calls["count"] / 5  # one loss per training batch
    assert estimate.validations == sum("valid" in record for record in records) == 3
    assert validations(5, 2) == 3 and validations(4, 2) == 2
    assert estimate.batch_seconds > 0 and estimate.validation_seconds > 0


def test_every_epoch_line_shows_the_time_left_until_training_ends(
    synthetic_events, tmp_path, capsys
):
    run("deepm3", _quick(synthetic_events, "epochs=3"), tmp_path / "run")
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert re.search(r"about \d+ s left \(2 more epochs at most\)$", lines[0])
    assert re.search(r"about \d+ s left \(1 more epoch at most\)$", lines[1])
    assert "left" not in lines[2]  # training ends after the last epoch


# Stands in for the python that scripts/demo.sh calls (``$PY -m deepm3 COMMAND ...``): logs
# each call, prints the estimate line the test hands it for ``train --estimate``, and a
# finished run's epoch line for ``train``.
FAKE_PYTHON = """#!/usr/bin/env bash
echo "$*" >>calls.log
model=""
for ((i = 1; i <= $#; i++)); do
  if [[ ${!i} == --model ]]; then j=$((i + 1)); model=${!j}; fi
done
if [[ " $* " == *" --estimate "* ]]; then
  cat "estimates/$model"
elif [[ $3 == train ]]; then
  echo "epoch 1/1: loss 1.0000, 1.0 s"
fi
"""


def test_the_demo_script_announces_the_slower_estimate_before_training(tmp_path):
    """scripts/demo.sh, run with a stand-in python: it reads the seconds off the real
    ``RunEstimate.line()`` of each model, announces the longer, then trains each model with its
    demo config (and no time budget), after the estimates."""
    shutil.copytree(REPO / "scripts", tmp_path / "scripts")
    (tmp_path / "estimates").mkdir()
    estimates = {
        "deepm3": RunEstimate("deepm3", 20, 43, 0.5, 20, 2.0, 1.0, 1),  # 1 + 430 + 44 = 475 s
        "sasrec": RunEstimate("sasrec", 20, 43, 0.7, 20, 2.0, 0.4, 1),  # 0.4 + 602 + 44 = 646 s
    }
    for model, estimate in estimates.items():
        (tmp_path / "estimates" / model).write_text(estimate.line() + "\n")
    fake = tmp_path / "fake-python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    done = subprocess.run(
        ["bash", "scripts/demo.sh"],
        cwd=tmp_path,
        env={**os.environ, "PY": str(fake)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    slower = round(max(estimate.seconds for estimate in estimates.values()))
    assert slower == 646
    out = done.stdout.splitlines()
    announced = [line for line in out if line.startswith("Training both at once")]
    assert announced == [
        "Training both at once: about 10 min 46 s at the speed just",
    ]
    for model, estimate in estimates.items():
        assert f"  {estimate.line()}" in out
        assert f"[{model}] epoch 1/1: loss 1.0000, 1.0 s" in out
    calls = (tmp_path / "calls.log").read_text().splitlines()
    trained = [call for call in calls if "--config" in call]
    assert len(trained) == 4  # each model's estimate, then its training
    assert all("--estimate" in call for call in trained[:2])
    for model in TRAINED:
        assert sum(f"--model {model} --config configs/demo/{model}.yaml" in c for c in trained) == 2
    assert not any("time_budget" in call for call in calls)
