"""The suite's latency measurements see histories as the evaluator and the server do: without
their padding, and the states they time are each user's own."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepm3.data.sequences import evaluation_table
from deepm3.models import build_model, model_options
from deepm3.models.contract import run_model
from deepm3.suite import measure


@pytest.mark.parametrize("name", ["deepm3", "sasrec", "gru4rec"])
def test_final_states_are_each_users_own_in_the_tables_order(synthetic, name):
    """Batched by history length and trimmed, the states equal those of each user run alone
    on its padded window (an independent path), row for row."""
    torch.manual_seed(0)
    options = model_options(name, {"hidden_size": 16, "dropout": 0.0})
    model = build_model(name, synthetic.num_items, options, synthetic.max_len).eval()
    table = evaluation_table(synthetic, "test")
    lengths = table.lengths()
    assert len(set(lengths.tolist())) > 3  # histories of many lengths, so the order matters
    states, _, _ = measure._final_states(model, table, torch.device("cpu"), batch_size=7)
    with torch.no_grad():
        alone = torch.cat(
            [run_model(model, table.batch(np.array([row])))[0][:, -1] for row in range(len(table))]
        )
    torch.testing.assert_close(states, alone, rtol=1e-5, atol=1e-5)


def test_one_users_latency_is_timed_on_its_own_events(synthetic, monkeypatch):
    """B=1: the model sees as many positions as the user has events in the window."""
    table = evaluation_table(synthetic, "test")
    seen = []

    def spy(model, batch):
        seen.append(batch.items.shape)
        return torch.zeros(1, batch.items.shape[1], 4), {}

    monkeypatch.setattr(measure, "run_model", spy)
    measure._single_user_ms(None, table, torch.device("cpu"), users=10)
    rows = np.arange(15) % len(table)
    assert seen == [(1, int(length)) for length in table.lengths()[rows]]
    assert min(length for _, length in seen) < synthetic.max_len  # some windows had padding
