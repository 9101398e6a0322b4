"""The training loop: learning on real data, resume after kill -9, NaN handling."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from synthetic import REPO, write_synthetic_csv

from deepm3.config import load_config
from deepm3.data.prepare import prepare
from deepm3.errors import DeepM3Error
from deepm3.train import loop
from deepm3.train.run import resume, run

QUICK = ["max_len=50", "batch_size=16", "lr=0.003", "epochs=2", "progress=false", "num_threads=2"]
QUICK += ["train_windows=last"]  # one window per user keeps the test short


@pytest.fixture(scope="module")
def ml100k_pop_valid(real_data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("pop")
    config = load_config(
        None, ["max_len=50"], base={"data": {"dataset": "ml-100k", "data_dir": str(real_data_dir)}}
    )
    return run("pop", config, out)["valid"]["ndcg@10"]


@pytest.mark.parametrize("model", ["deepm3", "sasrec", "tisasrec", "gru4rec", "timeattn"])
def test_two_epochs_on_ml100k_beat_popularity_on_validation(
    model, real_data_dir, ml100k_pop_valid, tmp_path
):
    config = load_config(
        None, QUICK, base={"data": {"dataset": "ml-100k", "data_dir": str(real_data_dir)}}
    )
    metrics = run(model, config, tmp_path)
    assert metrics["valid"]["ndcg@10"] > ml100k_pop_valid
    for name in (
        "config.json",
        "provenance.json",
        "metrics.json",
        "log.jsonl",
        "serving.npz",  # what recommend, serve and export read without the data
        "best.pt",
        "last.pt",
        "per_user_test.csv.gz",
    ):
        assert (tmp_path / name).is_file()
    provenance = json.loads((tmp_path / "provenance.json").read_text())
    # recomputed from the raw file, not read back from the run's own records or the cache
    assert provenance["data_fingerprint"] == prepare(config.data, use_cache=False).fingerprint
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert re.fullmatch(f"{head}(-dirty)?", provenance["git_commit"])


def _synthetic_args(csv, out, epochs):
    return [
        sys.executable,
        "-m",
        "deepm3",
        "train",
        "--dataset",
        str(csv),
        "--model",
        "deepm3",
        "--out",
        str(out),
        f"epochs={epochs}",
        "hidden_size=16",
        "max_len=20",
        "batch_size=8",
        "patience=100",
        "progress=false",
        "num_threads=1",
    ]


def test_resume_after_kill_minus_nine_gives_identical_metrics(tmp_path):
    csv = write_synthetic_csv(tmp_path / "events.csv", num_users=150, max_len=40)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    epochs = 6
    subprocess.run(
        _synthetic_args(csv, tmp_path / "whole", epochs), env=env, check=True, capture_output=True
    )
    process = subprocess.Popen(
        _synthetic_args(csv, tmp_path / "killed", epochs),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    log = tmp_path / "killed" / "log.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= 2:
            break
        time.sleep(0.01)
    time.sleep(0.05)  # land somewhere inside the next epoch
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (tmp_path / "killed" / "metrics.json").exists()
    resumed = subprocess.run(
        [sys.executable, "-m", "deepm3", "train", "--resume", str(tmp_path / "killed")],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "run directory" in resumed.stdout
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    again = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    assert again["test"] == whole["test"] and again["valid"] == whole["valid"]
    assert again["best_epoch"] == whole["best_epoch"] and again["epochs_run"] == epochs
    lines = (tmp_path / "killed" / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == list(range(1, epochs + 1))


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    csv = write_synthetic_csv(tmp_path / "events.csv", num_users=40)
    real_loss = loop.sequence_loss
    calls = {"count": 0}

    def failing_loss(*args, **kwargs):
        calls["count"] += 1
        value = real_loss(*args, **kwargs)
        return value * float("nan") if calls["count"] > 5 else value

    monkeypatch.setattr(loop, "sequence_loss", failing_loss)
    config = load_config(
        None,
        ["epochs=5", "hidden_size=8", "max_len=10", "batch_size=8", "progress=false"]
        + ["train_windows=last"],  # one row per user: 5 steps an epoch
        base={"data": {"dataset": str(csv)}},
    )
    with pytest.raises(DeepM3Error, match="loss became nan at epoch 2.*last good checkpoint"):
        run("deepm3", config, tmp_path / "run")
    saved = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert saved["state"]["epoch"] == 1
    monkeypatch.setattr(loop, "sequence_loss", real_loss)
    resumed = resume(tmp_path / "run")  # the kept checkpoint is usable
    assert resumed["epochs_run"] == 5


def test_evaluate_command_rescores_a_finished_run_under_both_protocols(tmp_path, capsys):
    from deepm3.cli import main

    csv = write_synthetic_csv(tmp_path / "events.csv", num_users=60, num_items=300)
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--dataset",
                str(csv),
                "--model",
                "deepm3",
                "--out",
                str(out),
                "epochs=1",
                "hidden_size=8",
                "max_len=10",
                "progress=false",
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["lipschitz"]["measured"] <= metrics["lipschitz"]["upper_bound"] <= 1.0001
    assert main(["evaluate", str(out)]) == 0
    full = json.loads((out / "evaluate_full.json").read_text())
    assert full["test"] == metrics["test"]  # the same best model, the same ranks
    assert main(["evaluate", str(out), "--protocol", "sampled"]) == 0
    sampled = json.loads((out / "evaluate_sampled.json").read_text())
    assert sampled["protocol"]["protocol"] == "sampled"
    assert sampled["test"]["hr@10"] >= full["test"]["hr@10"]  # 101 candidates, not all items
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "nothing")]) == 2
    assert "not a run directory" in capsys.readouterr().err
