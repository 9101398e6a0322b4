"""``deepm3 export``: every trainable model's scoring path as TorchScript and ONNX, equal to the
eager recommender (max abs difference < 1e-5 at two batch sizes), refusals for what cannot be
exported, and the exported file usable on its own (items.txt, raw tensors)."""

import json
import shutil

import numpy as np
import pytest
import torch
from synthetic import SMALL_RUN as SMALL
from synthetic import write_synthetic_csv

from deepm3.cli import main
from deepm3.config import load_config
from deepm3.errors import ConfigError
from deepm3.recommend import Recommender, parse_request
from deepm3.recommend.export import export_run, load_exported
from deepm3.recommend.scoring_path import seconds_since_previous
from deepm3.train.run import run

MODELS = ("deepm3", "sasrec", "tisasrec", "gru4rec", "timeattn")
# run label -> (model, extra settings): every trainable model, and the closed-form flows
TRAINED = {
    **{name: (name, []) for name in MODELS},
    "deepm3-decay": ("deepm3", ["ode=decay"]),
    "timeattn-flow": ("timeattn", ["flow=decay", "predict_at=target_time"]),
    "deepm3-gaps": ("deepm3", ["gap_encoding=shared"]),
    "timeattn-gaps": ("timeattn", ["gap_encoding=shared"]),
    "tisasrec-gaps": ("tisasrec", ["gap_encoding=shared"]),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    csv = write_synthetic_csv(folder / "events.csv", num_users=30)
    out = {}
    for label, (name, extra) in {**TRAINED, "pop": ("pop", [])}.items():
        settings = ["max_len=10"] if name == "pop" else [*SMALL, "epochs=1", *extra]
        config = load_config(None, settings, base={"data": {"dataset": str(csv)}})
        run(name, config, folder / label)
        out[label] = folder / label
    return out


def raw_histories(rec: Recommender, count: int) -> list[list[list]]:
    """Raw (item id, unix time) events of ``count`` users: the last ``max_len`` of each."""
    events, ids = rec.data.events, rec.data.events.item_ids
    out = []
    for user in range(1, count + 1):
        end = events.offsets[user + 1]
        rows = slice(max(events.offsets[user], end - rec.max_len), end)
        times = events.timestamps[rows].tolist()
        out.append([[ids[i], t] for i, t in zip(events.items[rows], times, strict=True)])
    return out


def exported_inputs(histories, vocabulary: list[str], max_len: int, at: list[int]):
    """The export's raw inputs for raw histories, built here from items.txt: left-padded items
    and times, each history's time unit (its smallest non-zero gap, the rule for a request's
    own events) and query times."""
    index = {raw: i for i, raw in enumerate(vocabulary) if i}
    items = np.zeros((len(histories), max_len), dtype=np.int64)
    times = np.zeros((len(histories), max_len), dtype=np.int64)
    scales = np.ones(len(histories), dtype=np.int64)
    for row, history in enumerate(histories):
        items[row, max_len - len(history) :] = [index[raw] for raw, _ in history]
        times[row, max_len - len(history) :] = [t for _, t in history]
        gaps = np.diff([t for _, t in history])
        scales[row] = gaps[gaps > 0].min() if (gaps > 0).any() else 1
    return items, times, scales, np.array(at, dtype=np.int64)


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
@pytest.mark.parametrize("label", TRAINED)
def test_the_export_scores_like_the_eager_model(runs, label, fmt, tmp_path):
    """The exported file, run here on 12 users' raw histories (time units of minutes, hours:
    TiSASRec reads them) and query times (every other one 3 days later: DeepM3 evolves, by its
    ODE or its closed form), scores every item as the eager
    :meth:`Recommender.recommend_many` does (max abs diff < 1e-5)."""
    folder = export_run(runs[label], fmt, tmp_path / "export")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["format"] == fmt and manifest["model"] == TRAINED[label][0]
    assert set(manifest["parity_max_abs_diff"]) == {"B=1", "B=64"}
    rec = Recommender.from_run(runs[label], clock=lambda: 2e9)
    histories = raw_histories(rec, 12)
    at = [h[-1][1] + (3 * 86_400 if row % 2 else 0) for row, h in enumerate(histories)]
    vocabulary = (folder / "items.txt").read_text().split("\n")
    inputs = exported_inputs(histories, vocabulary, rec.max_len, at)
    assert len(set(inputs[2].tolist()) - {1}) >= 2  # several time units, none trivial
    exported = load_exported(folder / manifest["file"])(*inputs)
    everything = rec.data.num_items
    requests = [
        parse_request({"events": h, "at": t, "k": everything, "include_history": True})
        for h, t in zip(histories, at, strict=True)
    ]
    for row, answer in enumerate(rec.recommend_many(requests)):
        columns = [vocabulary.index(item) for item in answer.items]
        assert len(columns) == everything
        assert np.abs(exported[row, columns] - np.array(answer.scores)).max() < 1e-5, row


def test_the_exported_file_answers_raw_events_like_recommend(runs, tmp_path):
    """From raw ids through items.txt to the exported graph, at a later query time: the same
    top-k as ``Recommender.recommend``."""
    folder = export_run(runs["deepm3"], "onnx", tmp_path / "export", solver="rk4")
    vocabulary = (folder / "items.txt").read_text().split("\n")
    index = {raw: i for i, raw in enumerate(vocabulary) if i}
    rec = Recommender.from_run(runs["deepm3"], clock=lambda: 2e9)
    events = [["i1", 1_000_000_000], ["i2", 1_000_003_600], ["i3", 1_000_090_000]]
    at = 1_000_090_000 + 7 * 86_400
    answer = rec.recommend(events, at=at, k=5, solver="rk4", include_history=True)
    items = np.zeros((1, 10), dtype=np.int64)
    times = np.zeros((1, 10), dtype=np.int64)
    items[0, -3:] = [index[raw] for raw, _ in events]
    times[0, -3:] = [t for _, t in events]
    exported = load_exported(folder / "model.onnx")
    scores = exported(items, times, np.ones(1, np.int64), np.array([at]))
    scores[0, 0] = -np.inf
    top = np.argsort(-scores[0], kind="stable")[:5]
    assert [vocabulary[i] for i in top] == answer.items
    assert np.allclose(scores[0, top], answer.scores, atol=1e-5)


def test_gaps_are_computed_as_the_data_pipeline_does():
    items = torch.tensor([[0, 0, 5, 6, 7], [1, 2, 3, 4, 5]])
    times = torch.tensor([[0, 0, 100, 160, 160], [10, 20, 40, 80, 160]])
    expected = torch.tensor([[0, 0, 0, 60, 0], [0, 10, 20, 40, 80]])
    assert torch.equal(seconds_since_previous(items, times), expected)


def test_what_cannot_be_exported_is_refused_with_a_reason(runs, tmp_path):
    with pytest.raises(ConfigError, match="count baseline"):
        export_run(runs["pop"], "torchscript", tmp_path / "pop")
    adaptive = tmp_path / "adaptive"
    shutil.copytree(runs["deepm3"], adaptive)
    config = json.loads((adaptive / "config.json").read_text())
    config["model"]["solver"] = "dopri5"
    (adaptive / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="dopri5"):
        export_run(adaptive, "torchscript", tmp_path / "dopri5")
    folder = export_run(adaptive, "torchscript", tmp_path / "euler", solver="euler")
    assert json.loads((folder / "manifest.json").read_text())["solver"] == "euler"
    with pytest.raises(ConfigError, match="no ODE solver"):
        export_run(runs["sasrec"], "torchscript", tmp_path / "s", solver="rk4")
    with pytest.raises(ConfigError, match="no ODE solver"):  # a closed form: nothing to choose
        export_run(runs["deepm3-decay"], "torchscript", tmp_path / "d", solver="rk4")
    with pytest.raises(ConfigError, match="unknown export format"):
        export_run(runs["sasrec"], "tflite", tmp_path / "s")


def test_cli_exports_and_refuses(runs, tmp_path, capsys):
    assert main(["export", str(runs["gru4rec"]), "--out", str(tmp_path / "g")]) == 0
    assert "parity vs eager" in capsys.readouterr().out
    assert main(["export", str(runs["pop"]), "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("deepm3: error:") and "count baseline" in err and err.count("\n") == 1


def test_cli_serve_passes_its_options_and_checks_them(runs, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(
        "deepm3.recommend.server.serve", lambda *args, **kw: calls.append((args, kw))
    )
    assert main(["serve", str(runs["deepm3"]), "--port", "8123", "--max-batch", "8"]) == 0
    ((args, options),) = calls
    assert args[1:] == ("127.0.0.1", 8123) and options["max_batch"] == 8
    assert options["max_wait_ms"] == 2.0 and options["unknown_items"] == "ignore"
    assert main(["serve", str(runs["deepm3"]), "--port", "70000"]) == 2
    assert "--port" in capsys.readouterr().err
