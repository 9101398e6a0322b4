"""A run directory serves on its own: copied to a folder of its own, with the training data
moved away and no ``DEEPM3_DATA_DIR``, ``deepm3 recommend``, the server and ``deepm3 export``
answer every request that brings its own events exactly as they did beside the data (the item
vocabulary and the count baselines' counts are in ``serving.npz``), refuse a request by user id
with one clear reason ("send the user's events"), and never download anything. A run recorded
before ``serving.npz`` existed is rebuilt from its data, as before."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from synthetic import SMALL_RUN as SMALL
from synthetic import write_synthetic_csv

import deepm3.data.datasets as datasets
from deepm3.cli import main
from deepm3.config import load_config
from deepm3.recommend import Recommender, parse_request
from deepm3.recommend.export import export_run
from deepm3.recommend.server import create_app
from deepm3.train.run import run

NOW = 2_000_000_000.0  # the synthetic data lies before this clock
LABELS = ("deepm3", "last_item", "pop", "ml-1m")
NO_DATA = "the run's data is not available here"


def _requests(item_ids: np.ndarray) -> list[dict]:
    """Requests that bring their own events (raw ids of the run), with and without ``at``."""
    ids = [str(item) for item in item_ids[1:]]
    start = 1_000_000_000
    return [
        {"events": [[ids[3], start], [ids[4], start + 3600]], "k": 5, "id": "short"},
        {"events": [[ids[n % len(ids)], start + 600 * n] for n in range(14)], "k": 8},
        {"events": [[ids[7], start], [ids[2], start + 60]], "at": start + 86_400 * 3, "k": 4},
        {"events": [[ids[1], start], ["not-an-item", start + 1]], "k": 3},  # one ignored
    ]


def _dat(csv: Path, target: Path) -> Path:
    """The synthetic events as an ML-1M ``ratings.dat`` (a named data set read by folder)."""
    frame = pd.read_csv(csv)
    lines = [f"{u}::{i}::4::{t}\n" for u, i, t in frame.itertuples(index=False)]
    target.mkdir()
    (target / "ratings.dat").write_text("".join(lines))
    return target


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Runs trained beside their data, the answers they gave there, then the data moved away
    (``away`` maps each moved path to where it went). The answers beside the data are those
    of the run read as before ``serving.npz`` existed (a copy without it: everything rebuilt
    from the data), an independent path from the file read once the data is gone."""
    folder = tmp_path_factory.mktemp("self_contained")
    csv = write_synthetic_csv(folder / "events.csv", num_users=40)
    ml1m = _dat(csv, folder / "ml")
    out: dict = {"runs": {}, "before": {}, "known": {}}
    for label in LABELS:
        name = "deepm3" if label == "ml-1m" else label
        settings = [*SMALL, "epochs=1"] if name == "deepm3" else ["max_len=10"]
        data = {"dataset": str(csv)}
        if label == "ml-1m":
            data = {"dataset": "ml-1m", "data_dir": str(ml1m), "kcore": 0}
        run(name, load_config(None, settings, base={"data": data}), folder / label)
        assert (folder / label / "serving.npz").is_file()
        rebuilt = Path(shutil.copytree(folder / label, folder / f"{label}-rebuilt"))
        (rebuilt / "serving.npz").unlink()
        rec = Recommender.from_run(rebuilt, clock=lambda: NOW)
        requests = [parse_request(r) for r in _requests(rec.item_ids)]
        out["before"][label] = [a.to_dict() for a in rec.recommend_many(requests)]
        out["known"][label] = rec.recommend(user=rec.data.events.user_ids[1], k=5).to_dict()
        out["runs"][label] = folder / label
    out["away"] = {csv: folder / "moved.csv", ml1m: folder / "moved-ml"}
    for path, moved in out["away"].items():
        path.rename(moved)
    return out


@pytest.fixture
def copied(trained, tmp_path, monkeypatch) -> dict[str, Path]:
    """Copies of the runs in a fresh folder; no DEEPM3_DATA_DIR, and a download fails."""
    monkeypatch.delenv("DEEPM3_DATA_DIR", raising=False)

    def no_download(*args, **kwargs):
        pytest.fail("tried to download data")

    monkeypatch.setattr(datasets, "download", no_download)
    for path in trained["away"]:
        assert not path.exists()
    return {
        label: Path(shutil.copytree(source, tmp_path / "served" / label))
        for label, source in trained["runs"].items()
    }


@pytest.mark.parametrize("label", LABELS)
def test_event_requests_are_answered_as_beside_the_data(trained, copied, label):
    rec = Recommender.from_run(copied[label], clock=lambda: NOW)
    assert rec.data is None
    requests = [parse_request(r) for r in _requests(rec.item_ids)]
    answers = [a.to_dict() for a in rec.recommend_many(requests)]
    assert answers == trained["before"][label]
    assert all(len(a["items"]) == r.k for a, r in zip(answers, requests, strict=True))


@pytest.mark.parametrize("label", ["deepm3", "last_item", "ml-1m"])
def test_the_cli_answers_events_and_refuses_a_user_id_with_a_reason(
    trained, copied, label, tmp_path, capsys
):
    requests = _requests(Recommender.from_run(copied[label]).item_ids)
    source = tmp_path / "requests.jsonl"
    lines = [json.dumps(r) for r in requests] + [json.dumps({"user": "u1", "k": 5})]
    source.write_text("\n".join(lines) + "\n")
    answers = tmp_path / "answers.jsonl"
    args = ["recommend", str(copied[label]), "--input", str(source), "--output", str(answers)]
    assert main(args) == 1  # one request failed
    assert "answered, 1 failed" in capsys.readouterr().err
    *events, refused = [json.loads(line) for line in answers.read_text().splitlines()]
    # the CLI's clock is the real one: every event lies in the past, so the answers agree
    assert events == trained["before"][label]
    assert refused["line"] == len(lines) and refused["status"] == 422
    assert NO_DATA in refused["error"] and "send the user's events" in refused["error"]


def test_the_server_answers_event_requests_and_refuses_a_user_id(trained, copied):
    app = create_app(Recommender.from_run(copied["deepm3"], clock=lambda: NOW))
    requests = _requests(Recommender.from_run(copied["deepm3"]).item_ids)
    with TestClient(app) as client:
        answer = client.post("/recommend", json=requests[0])
        assert answer.status_code == 200 and answer.json() == trained["before"]["deepm3"][0]
        listed = client.post("/recommend", json=requests)
        assert listed.status_code == 200 and listed.json() == trained["before"]["deepm3"]
        refused = client.post("/recommend", json={"user": "u1", "k": 5})
        assert refused.status_code == 422 and "send the user's events" in refused.json()["error"]
        assert client.get("/health").json()["known_users"] == 0
        # a user whose events were posted is served from their cached state
        posted = client.post("/events", json={"user": "u1", "events": requests[0]["events"]})
        assert posted.status_code == 200
        cached = client.post("/recommend", json={"user": "u1", "k": 5})
        assert cached.status_code == 200 and len(cached.json()["items"]) == 5


def test_export_needs_only_the_run_directory(trained, copied, tmp_path):
    folder = export_run(copied["deepm3"], "torchscript", tmp_path / "export")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert max(manifest["parity_max_abs_diff"].values()) < 1e-5
    vocabulary = (folder / "items.txt").read_text().splitlines()
    moved = pd.read_csv(trained["away"][next(iter(trained["away"]))], dtype=str)
    assert vocabulary[0] == "<pad>" and sorted(vocabulary[1:]) == sorted(set(moved["item_id"]))


def test_a_known_user_is_served_where_the_data_is(trained, copied, tmp_path, monkeypatch):
    """With the data back (the ml-1m run's recorded folder, or DEEPM3_DATA_DIR), a request by
    user id reads the user's history as before."""
    (csv, moved_csv), (ml1m, moved_ml1m) = trained["away"].items()
    shutil.copytree(moved_ml1m, tmp_path / "elsewhere")
    monkeypatch.setenv("DEEPM3_DATA_DIR", str(tmp_path / "elsewhere"))
    rec = Recommender.from_run(copied["ml-1m"], clock=lambda: NOW)
    assert (
        rec.recommend(user=rec.data.events.user_ids[1], k=5).to_dict()
        == (trained["known"]["ml-1m"])
    )
    shutil.copy(moved_csv, csv)  # the CSV run recorded its file's path
    try:
        rec = Recommender.from_run(copied["deepm3"], clock=lambda: NOW)
        assert rec.recommend(user="u1", k=5).to_dict() == trained["known"]["deepm3"]
    finally:
        csv.unlink()


@pytest.mark.parametrize("label", ["deepm3", "last_item"])
def test_a_run_recorded_before_serving_npz_is_rebuilt_from_its_data(trained, copied, label, capsys):
    (csv, moved_csv), _ = trained["away"].items()
    (copied[label] / "serving.npz").unlink()
    args = ["recommend", str(copied[label]), "--input", "/dev/null"]
    assert main(args) == 2  # without its data such a run cannot load: the error says why
    assert f"{csv}: file not found" in capsys.readouterr().err
    shutil.copy(moved_csv, csv)
    try:
        rec = Recommender.from_run(copied[label], clock=lambda: NOW)
        requests = [parse_request(r) for r in _requests(rec.item_ids)]
        answers = [a.to_dict() for a in rec.recommend_many(requests)]
    finally:
        csv.unlink()
    assert answers == trained["before"][label]
