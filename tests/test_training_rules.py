"""The loop does what its settings say: test split once, eval_every, time_budget, weight_decay,
temporal split end to end, fresh runs never reuse an old run's files, and runs rebuild from the
fully resolved config they stored."""

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from spies import record_evaluations
from synthetic import SMALL_RUN as SMALL
from synthetic import write_synthetic_csv

from deepm3.cli import main
from deepm3.config import SELECTION_METRIC, load_config
from deepm3.data.prepare import prepare
from deepm3.errors import ConfigError, DeepM3Error
from deepm3.eval.evaluator import evaluate
from deepm3.models import build_model, model_options
from deepm3.models.deepm3 import DeepM3Options
from deepm3.train import loop, selection
from deepm3.train.loop import model_scorer
from deepm3.train.run import resume, run


@pytest.fixture(scope="module")
def csv(tmp_path_factory):
    return write_synthetic_csv(tmp_path_factory.mktemp("rules") / "events.csv", num_users=40)


def config_for(csv, *overrides):
    return load_config(None, [*SMALL, *overrides], base={"data": {"dataset": str(csv)}})


def test_the_test_split_is_evaluated_once_after_training(csv, tmp_path, monkeypatch):
    roles = record_evaluations(monkeypatch)  # a call from any module counts
    run("deepm3", config_for(csv, "epochs=3", "patience=10"), tmp_path / "trained")
    assert roles == ["valid"] * 3 + ["valid", "test"]  # the final valid is from best.pt
    roles.clear()
    config = load_config(None, ["max_len=10"], base={"data": {"dataset": str(csv)}})
    run("pop", config, tmp_path / "counted")
    assert roles == ["valid", "test"]


def _checkpoint_ranks(run_dir, checkpoint: str, data, config) -> pd.DataFrame:
    """Test ranks of the weights in ``run_dir/checkpoint``, loaded into a freshly built model
    (not through the run's own loading code)."""
    saved = json.loads((run_dir / "config.json").read_text())
    options = model_options(saved["model_name"], saved["model"])
    model = build_model(saved["model_name"], data.num_items, options, data.max_len)
    model.load_state_dict(torch.load(run_dir / checkpoint, weights_only=False)["model"])
    return evaluate(model_scorer(model.eval()), data, "test", config.eval)


def test_test_metrics_come_from_the_best_checkpoint(csv, tmp_path, monkeypatch):
    """Validation is rigged so that epoch 1 is the best of 3: the reported test metrics and
    per-user ranks are those of best.pt's weights, which rank differently from last.pt's."""
    real = selection.evaluate
    validations = []

    def epoch_one_is_best(scorer, data, role, *args, **kwargs):
        result = real(scorer, data, role, *args, **kwargs)
        validations.append(role)
        if len(validations) <= 3:  # the validations after epochs 1, 2, 3
            rigged = 1.0 if len(validations) == 1 else 0.0
            result = dataclasses.replace(
                result, metrics={**result.metrics, SELECTION_METRIC: rigged}
            )
        return result

    monkeypatch.setattr(selection, "evaluate", epoch_one_is_best)
    config = config_for(csv, "epochs=3", "patience=10", "lr=0.05")
    metrics = run("deepm3", config, tmp_path)
    assert (metrics["best_epoch"], metrics["epochs_run"]) == (1, 3)
    data = prepare(config.data)
    best = _checkpoint_ranks(tmp_path, "best.pt", data, config)
    last = _checkpoint_ranks(tmp_path, "last.pt", data, config)
    assert not best.per_user["rank"].equals(last.per_user["rank"])  # the check can tell them apart
    reported = pd.read_csv(tmp_path / "per_user_test.csv.gz")
    assert reported["rank"].tolist() == best.per_user["rank"].tolist()
    assert metrics["test"] == pytest.approx(best.metrics, rel=1e-12)


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
    assert metrics["stopped_by"] == "patience"  # a seeded CPU run: it does stop early
    values = [r["valid"]["ndcg@10"] for r in log]
    best = max(values)
    assert values.index(best) + 1 == metrics["best_epoch"]  # the first epoch that reached it
    assert all(value < best for value in values[-2:])  # element-wise: neither improved
    assert metrics["epochs_run"] == metrics["best_epoch"] + 2 == len(log)


# A recurrent model's validation curve: a plateau near popularity, then it learns order.
PLATEAU_THEN_LEARNING = [0.10, 0.10, 0.10, 0.10, 0.10, 0.20, 0.30, 0.25, 0.24, 0.23, 0.22]


def _scripted_validation(monkeypatch, curve: list[float]) -> None:
    """Training validations read ``curve`` (epoch by epoch) as their NDCG@10; the final
    evaluations from best.pt are the real ones."""
    real, seen = selection.evaluate, []

    def scripted(scorer, data, role, *args, **kwargs):
        result = real(scorer, data, role, *args, **kwargs)
        if role != "valid" or len(seen) >= len(curve):
            return result
        seen.append(role)
        metrics = {**result.metrics, SELECTION_METRIC: curve[len(seen) - 1]}
        return dataclasses.replace(result, metrics=metrics)

    monkeypatch.setattr(selection, "evaluate", scripted)


@pytest.mark.parametrize(
    ("min_epochs", "epochs_run", "best_epoch"),
    [(0, 3, 1), (5, 9, 7)],  # stopped on the plateau / after learning, 2 bad validations later
)
def test_patience_counts_only_after_the_warm_up(
    csv, tmp_path, monkeypatch, min_epochs, epochs_run, best_epoch
):
    _scripted_validation(monkeypatch, PLATEAU_THEN_LEARNING)
    settings = ("epochs=11", "patience=2", f"min_epochs={min_epochs}")
    metrics = run("gru4rec", config_for(csv, *settings), tmp_path)
    assert metrics["stopped_by"] == "patience"
    assert (metrics["epochs_run"], metrics["best_epoch"]) == (epochs_run, best_epoch)


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
    expected = {"loss": overrides[0].split("=")[1], "logq": "logq=true" in overrides}
    expected.update(
        (name, int(value))
        for name, value in (o.split("=") for o in overrides[1:])
        if name != "logq"
    )
    assert {name: stored[name] for name in expected} == expected  # recorded with the run


def _sampled_ce_by_hand(states, item_table, targets, negatives, correction) -> torch.Tensor:
    """The sampled softmax of the losses module docstring, one position at a time:
    ``-s_t + log(exp(s_t) + sum_{k: j_k != t} exp(s_{j_k} - correction_k))``; ``correction``
    is one float, or (P, K) per draw."""
    corrections = torch.as_tensor(correction, dtype=torch.float64).expand(negatives.shape)
    losses = []
    for state, target, drawn, shifts in zip(states, targets, negatives, corrections, strict=True):
        positive = float(state @ item_table[target])
        terms = [positive] + [
            float(state @ item_table[j]) - float(shift)
            for j, shift in zip(drawn.tolist(), shifts, strict=True)
            if j != target
        ]
        losses.append(math.log(sum(math.exp(t) for t in terms)) - positive)
    return torch.tensor(sum(losses) / len(losses))


@pytest.mark.parametrize("logq", [True, False])
def test_the_loop_minimises_the_logq_corrected_loss_when_asked(csv, tmp_path, monkeypatch, logq):
    """train.logq reaches the loss: the loss of the first training batch equals the sampled
    softmax computed by hand from that batch's states and negatives, corrected by
    log(K / N) with logq=true and uncorrected without."""
    real = loop.sequence_loss
    batches = []

    def spy(name, states, item_table, targets, num_negatives, generator, **kwargs):
        drawn_from = generator.get_state()
        value = real(name, states, item_table, targets, num_negatives, generator, **kwargs)
        batches.append((states.detach(), item_table.detach().clone(), targets, drawn_from, value))
        return value

    monkeypatch.setattr(loop, "sequence_loss", spy)
    settings = ("epochs=1", "loss=sampled_ce", "loss_negatives=4", f"logq={str(logq).lower()}")
    run("sasrec", config_for(csv, *settings), tmp_path)
    states, item_table, targets, drawn_from, value = batches[0]
    real_positions = targets > 0
    states, targets = states[real_positions], targets[real_positions]
    num_items = item_table.shape[0] - 1
    generator = torch.Generator().set_state(drawn_from)  # the same draws as the loop's
    negatives = torch.randint(1, num_items + 1, (len(targets), 4), generator=generator)
    correction = math.log(4 / num_items) if logq else 0.0
    expected = _sampled_ce_by_hand(states, item_table, targets, negatives, correction)
    assert float(value.detach()) == pytest.approx(float(expected), rel=1e-5)


def test_popularity_negatives_come_from_the_training_target_counts(csv, tmp_path, monkeypatch):
    """train.loss_sampling=popularity reaches the loss: the first batch's loss equals the
    sampled softmax by hand over draws from Q(j) ~ max(c_j, 0.5) ** alpha, c_j counted here
    among the targets the loop trains on, each corrected by log(K Q(j))."""
    real = loop.sequence_loss
    batches = []

    def spy(name, states, item_table, targets, num_negatives, generator, **kwargs):
        drawn_from = generator.get_state()
        value = real(name, states, item_table, targets, num_negatives, generator, **kwargs)
        batches.append((states.detach(), item_table.detach().clone(), targets, drawn_from, value))
        return value

    monkeypatch.setattr(loop, "sequence_loss", spy)
    settings = ("epochs=1", "loss=sampled_ce", "loss_negatives=4", "logq=true")
    config = config_for(csv, *settings, "loss_sampling=popularity", "loss_sampling_alpha=0.7")
    run("sasrec", config, tmp_path)
    states, item_table, targets, drawn_from, value = batches[0]
    states, targets = states[targets > 0], targets[targets > 0]
    data = prepare(config.data)
    table = loop.training_table(data, config.data.train_windows, config.data.window_stride)
    counts = np.bincount(table.targets.ravel(), minlength=data.num_items + 1)[1:]
    q = np.maximum(counts, 0.5) ** 0.7
    q = torch.tensor(q / q.sum())
    generator = torch.Generator().set_state(drawn_from)  # the same draws as the loop's
    negatives = torch.multinomial(q, len(targets) * 4, True, generator=generator) + 1
    negatives = negatives.view(len(targets), 4)
    correction = torch.log(4 * q[negatives - 1])
    expected = _sampled_ce_by_hand(states, item_table, targets, negatives, correction)
    assert float(value.detach()) == pytest.approx(float(expected), rel=1e-5)


# --- model selection rules, as pure functions of the training state (train/selection.py)


def _train(**changes):
    return dataclasses.replace(load_config(None, []).train, **changes)


def test_stop_reasons_in_their_order_and_at_their_boundaries():
    from deepm3.train.selection import TrainState, stop_reason

    train = _train(epochs=10, patience=3, time_budget=100.0)
    assert stop_reason(TrainState(epoch=9, bad_validations=2, seconds=99.9), train) is None
    assert stop_reason(TrainState(epoch=10), train) == "epochs"
    assert stop_reason(TrainState(epoch=1, bad_validations=3), train) == "patience"
    assert stop_reason(TrainState(epoch=1, seconds=100.0), train) == "time_budget"  # >= the cap
    assert stop_reason(TrainState(epoch=1, seconds=1e9), _train(time_budget=None)) is None
    pruned = TrainState(epoch=10, bad_validations=3, seconds=1e9, stopped_by="pruned")
    assert stop_reason(pruned, train) == "pruned"  # a pruned trial says so, whatever else holds


def test_best_checkpoint_holds_what_loading_needs_and_no_validation_is_one_error(csv, tmp_path):
    from deepm3.train.selection import TrainingError, final_results

    run("gru4rec", config_for(csv, "epochs=2"), tmp_path)
    saved = torch.load(tmp_path / "best.pt", weights_only=True)
    assert set(saved) == {"model_name", "model", "epoch", "config"}
    assert saved["model_name"] == "gru4rec"  # the registry name, checked when loading
    assert saved["epoch"] == json.loads((tmp_path / "metrics.json").read_text())["best_epoch"]
    with pytest.raises(
        TrainingError, match="^no epoch was validated; raise epochs or time_budget$"
    ):
        final_results(None, None, None, None, torch.device("cpu"), tmp_path / "none.pt", True)
