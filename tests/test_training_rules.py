"""The loop does what its settings say: test split once, eval_every, time_budget, weight_decay,
temporal split end to end, fresh runs never reuse an old run's files, and runs rebuild from the
fully resolved config they stored."""

import dataclasses
import json

import pandas as pd
import pytest
import torch
from synthetic import write_synthetic_csv

from deepm3.cli import main
from deepm3.config import load_config
from deepm3.data.prepare import prepare
from deepm3.errors import ConfigError, DeepM3Error
from deepm3.models.deepm3 import DeepM3Options
from deepm3.train import loop
from deepm3.train import run as run_module
from deepm3.train.run import resume, run

SMALL = ["hidden_size=8", "max_len=10", "batch_size=8", "progress=false", "num_threads=1"]


@pytest.fixture(scope="module")
def csv(tmp_path_factory):
    return write_synthetic_csv(tmp_path_factory.mktemp("rules") / "events.csv", num_users=40)


def config_for(csv, *overrides):
    return load_config(None, [*SMALL, *overrides], base={"data": {"dataset": str(csv)}})


def record_roles(monkeypatch, module):
    roles = []
    real = module.evaluate

    def spy(scorer, data, role, *args, **kwargs):
        roles.append(role)
        return real(scorer, data, role, *args, **kwargs)

    monkeypatch.setattr(module, "evaluate", spy)
    return roles


def test_the_test_split_is_evaluated_once_after_training(csv, tmp_path, monkeypatch):
    roles = record_roles(monkeypatch, loop)
    run("deepm3", config_for(csv, "epochs=3", "patience=10"), tmp_path / "trained")
    assert roles == ["valid"] * 3 + ["valid", "test"]  # the final valid is from best.pt
    roles = record_roles(monkeypatch, run_module)
    config = load_config(None, ["max_len=10"], base={"data": {"dataset": str(csv)}})
    run("pop", config, tmp_path / "counted")
    assert roles == ["valid", "test"]


def read_log(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def test_eval_every_validates_on_schedule_and_after_the_last_epoch(csv, tmp_path):
    run("deepm3", config_for(csv, "epochs=5", "eval_every=2", "patience=10"), tmp_path)
    assert [r["epoch"] for r in read_log(tmp_path) if "valid" in r] == [2, 4, 5]


def test_time_budget_stops_after_the_epoch_that_crosses_it(csv, tmp_path):
    metrics = run("deepm3", config_for(csv, "epochs=20", "time_budget=1e-6"), tmp_path)
    assert metrics["epochs_run"] == 1 and metrics["stopped_by"] == "time_budget"
    assert "valid" in read_log(tmp_path)[-1]


def test_patience_counts_validations_without_improvement(csv, tmp_path):
    metrics = run("deepm3", config_for(csv, "epochs=40", "patience=2", "lr=0.3"), tmp_path)
    log = read_log(tmp_path)
    assert metrics["stopped_by"] in ("patience", "epochs")
    if metrics["stopped_by"] == "patience":
        best = max(r["valid"]["ndcg@10"] for r in log)
        assert [r["valid"]["ndcg@10"] for r in log[-2:]] < [best, best]
        assert metrics["epochs_run"] == metrics["best_epoch"] + 2


def parameter_norm(run_dir):
    state = torch.load(run_dir / "last.pt", weights_only=False)["model"]
    return sum(float(v.float().norm() ** 2) for v in state.values()) ** 0.5


def test_weight_decay_shrinks_the_weights(csv, tmp_path):
    run("sasrec", config_for(csv, "epochs=2", "lr=0.01"), tmp_path / "plain")
    run("sasrec", config_for(csv, "epochs=2", "lr=0.01", "weight_decay=20"), tmp_path / "decay")
    assert parameter_norm(tmp_path / "decay") < 0.5 * parameter_norm(tmp_path / "plain")


def test_temporal_split_end_to_end(csv, tmp_path):
    config = config_for(
        csv, "epochs=2", "split=temporal", "temporal_valid=0.2", "temporal_test=0.2"
    )
    metrics = run("gru4rec", config, tmp_path)
    data = prepare(dataclasses.replace(config.data, max_len=10))
    tested = data.split.test_pos >= 0
    assert metrics["protocol"]["users"] == tested.sum() > 0
    ranks = pd.read_csv(tmp_path / "per_user_test.csv.gz")
    positions = data.events.offsets[ranks["user"]] + data.split.test_pos[ranks["user"]]
    assert (ranks["target"].to_numpy() == data.events.items[positions]).all()
    assert (data.split.train_len[ranks["user"]] <= data.split.test_pos[ranks["user"]]).all()


def test_a_new_run_never_reuses_an_old_run_directory(csv, tmp_path):
    run("deepm3", config_for(csv, "epochs=1"), tmp_path)
    with pytest.raises(ConfigError, match="already holds a run.*--resume.*--overwrite"):
        run("deepm3", config_for(csv, "epochs=1", "lr=0.01"), tmp_path)
    metrics = run("deepm3", config_for(csv, "epochs=1", "lr=0.01"), tmp_path, overwrite=True)
    assert json.loads((tmp_path / "config.json").read_text())["train"]["lr"] == 0.01
    assert metrics["epochs_run"] == 1


def test_the_stored_config_is_fully_resolved_and_rebuilt_strictly(csv, tmp_path, capsys):
    run("deepm3", config_for(csv, "epochs=1"), tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model"] == dataclasses.asdict(DeepM3Options(hidden_size=8))  # every option
    assert saved["data"]["kcore"] == 0 and saved["data"]["max_len"] == 10  # defaults resolved
    saved["train"]["an_old_setting"] = 1
    (tmp_path / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ConfigError, match="an_old_setting.*another deepm3 version"):
        resume(tmp_path)
    assert main(["train", "--resume", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("deepm3: error:") and error.count("\n") == 1


def test_a_non_finite_gradient_stops_before_the_update(csv, tmp_path, monkeypatch):
    real_loss = loop.sequence_loss
    calls = {"count": 0}

    def poisoned(name, states, *args, **kwargs):
        calls["count"] += 1
        value = real_loss(name, states, *args, **kwargs)
        if calls["count"] > 6:  # finite value, infinite slope: sqrt at 0
            value = value + torch.sqrt((states * 0).sum())
        return value

    monkeypatch.setattr(loop, "sequence_loss", poisoned)
    with pytest.raises(DeepM3Error, match="gradient norm became nan.*before the update"):
        run("deepm3", config_for(csv, "epochs=5", "train_windows=last"), tmp_path)  # 5 steps
    saved = torch.load(tmp_path / "last.pt", weights_only=False)
    assert saved["state"]["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in saved["model"].values())


def test_config_values_are_checked_before_any_data_is_read(tmp_path, capsys):
    missing = tmp_path / "nowhere.csv"  # reading it would fail with 'file not found'
    for override, message in (
        ("protocol=sampeld", "eval.protocol must be one of full, sampled"),
        (
            "loss=hinge",
            "train.loss must be one of ce, chunked_ce, sampled_ce, shared_ce, inbatch_ce, bpr",
        ),
        ("device=tpu", "train.device must be one of auto, cpu, cuda, mps"),
        ("dedup=some", "data.dedup must be one of none, first, last"),
        ("tie_order=random", "data.tie_order must be one of file, shuffle"),
        ("solver=heun", "solver must be one of"),
        ("lipschitz=strict", "lipschitz must be one of"),
        ("epoch=3", "did you mean train.epochs"),
        ("batch_size=0", "train.batch_size must be >= 1"),
        ("logq=true", "train.logq corrects the sampled softmax losses"),  # with loss=ce
    ):
        code = main(["train", "--dataset", str(missing), "--model", "deepm3", override])
        error = capsys.readouterr().err
        assert code == 2 and message in error and "not found" not in error, (override, error)


@pytest.mark.parametrize(
    "overrides",
    [
        ("loss=chunked_ce", "loss_chunk=7"),
        ("loss=shared_ce", "loss_negatives=16", "logq=true"),
        ("loss=sampled_ce", "loss_negatives=4", "logq=true"),
        ("loss=inbatch_ce",),
    ],
)
def test_every_scalable_loss_trains_end_to_end(csv, tmp_path, overrides):
    metrics = run("sasrec", config_for(csv, "epochs=2", *overrides), tmp_path)
    log = read_log(tmp_path)
    assert metrics["epochs_run"] == 2 and all(0 < r["loss"] < 1e3 for r in log)
    stored = json.loads((tmp_path / "config.json").read_text())["train"]
    assert {o.split("=")[0]: stored[o.split("=")[0]] for o in overrides}  # recorded with the run
    assert stored["loss"] == overrides[0].split("=")[1]
