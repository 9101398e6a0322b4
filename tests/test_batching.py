"""Length batching and padding trimming: every training row once per epoch in batches of
similar length, the models fed only the columns a batch needs, and the same model outputs and
evaluation ranks as the padded, table-ordered path."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from synthetic import write_synthetic_csv

from deepm3.config import EvalConfig, load_config
from deepm3.data.sequences import evaluation_table, training_table, trim_padding
from deepm3.eval.evaluator import evaluate
from deepm3.models import build_model, model_options
from deepm3.models.contract import item_scores, run_model
from deepm3.train import batching as batching_module
from deepm3.train import loop
from deepm3.train.batching import (
    epoch_batches,
    length_batches,
    length_chunks,
    random_batches,
)
from deepm3.train.run import load_trained, run


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 60), min_size=1, max_size=300),
    batch_size=st.integers(1, 70),
    seed=st.integers(0, 2**32 - 1),
)
def test_length_batches_hold_every_row_once_within_the_cell_budget(lengths, batch_size, seed):
    lengths = np.array(lengths)
    batches = length_batches(lengths, batch_size, np.random.default_rng(seed))
    rows = np.concatenate(batches)
    assert np.array_equal(np.sort(rows), np.arange(len(lengths)))  # each row exactly once
    budget = batch_size * lengths.mean()
    for batch in batches:
        assert len(batch) == 1 or len(batch) * lengths[batch].max() <= budget + 1e-9
    # the sorted cut leaves a batch only when the next row would pass the budget
    cells = sum(len(b) * lengths[b].max() for b in batches)
    assert cells <= 2 * budget * len(batches) + lengths.max()


def test_length_batches_cut_padding_and_keep_the_batch_count_and_randomness():
    """On Beauty-like lengths (most histories short, a few at the cap) the padded cells fall
    several-fold against random batches of the same size, an epoch keeps about as many
    batches, and two epochs draw different batches while one generator seed repeats them."""
    rng = np.random.default_rng(0)
    lengths = np.minimum(rng.geometric(1 / 7, 5000), 50)
    cells = {}
    for batching in ("random", "length"):
        batches = epoch_batches(batching, lengths, 256, np.random.default_rng([1, 1]))
        cells[batching] = sum(len(b) * lengths[b].max() for b in batches), len(batches)
    assert cells["random"][0] > 4 * cells["length"][0]
    assert abs(cells["length"][1] - cells["random"][1]) <= 0.25 * cells["random"][1]
    first = length_batches(lengths, 256, np.random.default_rng([1, 1]))
    again = length_batches(lengths, 256, np.random.default_rng([1, 1]))
    other = length_batches(lengths, 256, np.random.default_rng([1, 2]))
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=False))
    assert random_batches(10, 4, np.random.default_rng(0))[-1].shape == (2,)
    with pytest.raises(ValueError, match="unknown batching"):
        epoch_batches("sorted", lengths, 256, np.random.default_rng(0))


def _brute_force_cost(widths: list[int], overhead: int) -> int:
    """The least sum of (rows x longest + overhead) over every split of ascending widths."""
    best = {0: 0}
    for end in range(1, len(widths) + 1):
        best[end] = min(
            best[start] + (end - start) * widths[end - 1] + overhead for start in range(end)
        )
    return best[len(widths)]


@settings(max_examples=80, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 50), min_size=1, max_size=9),
    overhead=st.sampled_from([0, 3, 40, 1024]),
)
def test_length_chunks_split_a_batch_at_the_least_padded_cost(lengths, overhead):
    """Every row once, chunks ascending in length, and the split's cost is the optimum found
    here by trying every split point of the sorted lengths."""
    lengths = np.array(lengths)
    rows = np.random.default_rng(0).permutation(len(lengths))
    chunks = length_chunks(rows, lengths, overhead)
    assert sorted(np.concatenate(chunks).tolist()) == sorted(rows.tolist())
    flat = lengths[np.concatenate(chunks)]
    assert np.all(np.diff(flat) >= 0)
    cost = sum(len(c) * lengths[c].max() + overhead for c in chunks)
    assert cost == _brute_force_cost(sorted(lengths.tolist()), overhead)


def test_trimming_drops_only_all_padding_columns_and_keeps_the_outputs(synthetic):
    """A trimmed batch is the padded one without its leading all-padding columns (an empty
    history keeps one column); a model's outputs at real positions are unchanged."""
    table = training_table(synthetic)
    rows = np.argsort(table.lengths())[:5]  # the shortest rows: much leading padding
    padded = table.batch(rows)
    trimmed = trim_padding(padded)
    width = int(table.lengths()[rows].max())
    assert trimmed.items.shape == (5, width) < padded.items.shape
    for name in ("items", "timestamps", "time_gaps", "next_gaps", "targets"):
        assert torch.equal(getattr(trimmed, name), getattr(padded, name)[:, -width:])
    assert torch.equal(trimmed.users, padded.users)
    kept = trim_padding(dataclasses.replace(padded, items=torch.zeros_like(padded.items)))
    assert kept.items.shape == (5, 1)
    torch.manual_seed(0)
    for name in ("sasrec", "deepm3", "gru4rec", "tisasrec"):
        model = build_model(name, synthetic.num_items, model_options(name, {}), 20).eval()
        with torch.no_grad():
            full, _ = run_model(model, padded)
            short, _ = run_model(model, trimmed)
        torch.testing.assert_close(short, full[:, -width:], rtol=1e-5, atol=1e-5)
    assert load_config(None, []).train.batching == "random"  # the default keeps max_len


def _config(csv, batching: str, epochs: int = 2):
    return load_config(
        None,
        ["hidden_size=8", "max_len=30", "batch_size=16", "progress=false", "num_threads=1"]
        + [f"epochs={epochs}", f"batching={batching}", "dropout=0", "loss=ce"],
        base={"data": {"dataset": str(csv)}},
    )


def test_length_and_chunked_batching_train_on_trimmed_batches_of_every_row(tmp_path, monkeypatch):
    """Under ``length`` and ``chunked`` the model sees batches narrower than ``max_len`` (the
    histories' length, not the cap), each training window once per epoch; ``chunked`` computes
    exactly ``random``'s batches, in pieces; ``random`` keeps ``max_len`` columns (the dropout
    draws of committed runs)."""
    csv = write_synthetic_csv(tmp_path / "events.csv", num_users=80, min_len=3, max_len=60)
    seen: dict[str, list] = {"random": [], "chunked": [], "length": []}
    real_run_model = loop.run_model
    current = {"batching": "random"}

    def spy(model, batch):
        if model.training:
            seen[current["batching"]].append((batch.items.shape[1], batch.users.tolist()))
        return real_run_model(model, batch)

    monkeypatch.setattr(loop, "run_model", spy)
    monkeypatch.setattr(batching_module, "CHUNK_OVERHEAD_CELLS", 16)  # batches of 16 rows
    for batching in seen:
        current["batching"] = batching
        run("sasrec", _config(csv, batching, epochs=1), tmp_path / batching)
    assert {width for width, _ in seen["random"]} == {30}
    for batching in ("length", "chunked"):
        widths = [width for width, _ in seen[batching]]
        assert min(widths) < 15 and max(widths) <= 30 and np.mean(widths) < 25, widths
    windows = training_table(load_trained(tmp_path / "length")[1]).users
    for batching in seen:
        users = sorted(u for _, batch in seen[batching] for u in batch)
        assert users == sorted(windows.tolist()), batching  # every window once in the epoch
    pieces = iter(seen["chunked"])
    for _, whole in seen["random"]:  # each random batch, computed as consecutive chunks
        users: list[int] = []
        while len(users) < len(whole):
            users += next(pieces)[1]
        assert sorted(users) == sorted(whole)


@pytest.mark.parametrize("model", ["sasrec", "deepm3", "gru4rec"])
def test_chunked_batches_make_the_updates_of_whole_batches(tmp_path, model, monkeypatch):
    """With an exact loss and no dropout, training on random batches computed whole or in
    length chunks gives the same losses and validation, epoch by epoch, to rounding."""
    csv = write_synthetic_csv(tmp_path / "events.csv", num_users=60, min_len=3, max_len=60)
    monkeypatch.setattr(batching_module, "CHUNK_OVERHEAD_CELLS", 16)  # batches of 16 rows
    forwards = {"random": 0, "chunked": 0}
    real_run_model = loop.run_model
    logs = {}
    for batching in forwards:

        def spy(network, batch, batching=batching):
            forwards[batching] += network.training
            return real_run_model(network, batch)

        monkeypatch.setattr(loop, "run_model", spy)
        run(model, _config(csv, batching, epochs=3), tmp_path / batching)
        lines = (tmp_path / batching / "log.jsonl").read_text().splitlines()
        logs[batching] = [json.loads(line) for line in lines]
    assert forwards["chunked"] > 2 * forwards["random"]  # the batches were split
    for whole, chunked in zip(logs["random"], logs["chunked"], strict=True):
        assert chunked["loss"] == pytest.approx(whole["loss"], rel=1e-5)
        assert chunked["valid"]["ndcg@10"] == pytest.approx(whole["valid"]["ndcg@10"], abs=1e-6)


def test_the_evaluator_ranks_like_a_padded_one_user_at_a_time_path(tmp_path):
    """The evaluator scores users sorted by length in trimmed chunks; each user's rank equals
    the one computed here from the user's full padded row alone, masked and ranked by hand."""
    csv = write_synthetic_csv(tmp_path / "events.csv", num_users=50, min_len=3, max_len=60)
    run("gru4rec", _config(csv, "length"), tmp_path / "run")
    plan, data, _, model = load_trained(tmp_path / "run")
    result = evaluate(
        lambda batch: item_scores(model, run_model(model, batch)[0][:, -1]),
        data,
        "test",
        EvalConfig(eval_batch_size=7),
    )
    table = evaluation_table(data, "test")
    assert len(set(table.lengths().tolist())) > 5  # many lengths: trimming and sorting matter
    ranks = result.per_user.set_index("user")["rank"]
    events = data.events
    with torch.no_grad():
        for row in range(len(table)):
            batch = table.batch(np.array([row]))
            assert batch.items.shape[1] == plan.config.data.max_len
            scores = item_scores(model, run_model(model, batch)[0][:, -1])[0]
            user = int(table.users[row])
            start = events.offsets[user]
            seen = events.items[start : start + data.split.test_pos[user]]
            scores[torch.from_numpy(seen)] = float("-inf")
            scores = scores[1:]  # item 0 is padding
            target = scores[table.target[row] - 1]
            assert int((scores >= target).sum()) == ranks[user], user
