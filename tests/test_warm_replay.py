"""Known users warmed at start (``serve --warm``: every known user's state cached in batches)
and ``max_replay`` (only a history's last k events replayed): each checked against an
independent path, a cold replay or a replay of the last k events sent by hand."""

import asyncio
import gc

import httpx
import pytest
import torch
from synthetic import SMALL_RUN, small_run, write_synthetic_csv

import deepm3.recommend.server as server
from deepm3.cli import main
from deepm3.config import load_config
from deepm3.errors import ConfigError
from deepm3.recommend import Recommender
from deepm3.train.run import run

SMALL = SMALL_RUN
NOW = 2_000_000_000.0  # the synthetic data lies before this clock
LATER = 3 * 86_400  # a query this long after a user's last event evolves the state


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return small_run(tmp_path_factory.mktemp("warm"))


def recommender(path, **options) -> Recommender:
    return Recommender.from_run(path, clock=lambda: NOW, **options)


def count_replays(rec: Recommender, monkeypatch) -> list[int]:
    """Histories replayed through the model from now on (one number per call)."""
    calls: list[int] = []
    real = rec.scoring.many_histories

    def spy(histories, solver):
        calls.append(len(histories))
        return real(histories, solver)

    monkeypatch.setattr(rec.scoring, "many_histories", spy)
    return calls


def every_score(rec: Recommender, **request) -> dict[str, float]:
    """Every item's score for one request (seen items included)."""
    num_items = len(rec.item_ids) - 1
    answer = rec.recommend(k=num_items, include_history=True, **request)
    return dict(zip(answer.items, answer.scores, strict=True))


def assert_same_scores(left: dict[str, float], right: dict[str, float]) -> None:
    assert left.keys() == right.keys()
    difference = max(abs(left[item] - right[item]) for item in left)
    assert difference < 1e-5, difference


def raw_events(rec: Recommender, user: str) -> list[list]:
    """The user's events in the run's data, as raw [item id, unix time] pairs."""
    events = rec.data.events
    index = list(events.user_ids).index(user)
    rows = slice(events.offsets[index], events.offsets[index + 1])
    ids = events.item_ids[events.items[rows]]
    return [[str(i), int(t)] for i, t in zip(ids, events.timestamps[rows], strict=True)]


@pytest.mark.parametrize("max_replay", [None, 4])
def test_warm_answers_known_users_from_the_cache_as_a_cold_replay_would(
    run_dir, max_replay, monkeypatch
):
    """After :meth:`warm`, a known user's request replays nothing, and its scores (at their last
    event and three days later) equal those of a recommender that replays the history."""
    warm = recommender(run_dir, max_replay=max_replay)
    cold = recommender(run_dir, max_replay=max_replay)
    users = [str(user) for user in warm.data.events.user_ids[1:]]
    warmed = warm.warm()
    assert warmed["users"] == len(users) == len(warm.cache)
    warm_replays, cold_replays = count_replays(warm, monkeypatch), count_replays(cold, monkeypatch)
    for user in users[:8]:
        last = raw_events(warm, user)[-1][1]
        for at in (None, last + LATER):
            assert_same_scores(
                every_score(warm, user=user, at=at), every_score(cold, user=user, at=at)
            )
    assert warm_replays == [] and len(cold_replays) == 16


def test_warm_keeps_the_most_recently_active_users_when_the_cache_is_smaller(run_dir):
    rec = recommender(run_dir, cache_size=5)
    assert rec.warm()["users"] == 5
    users = [str(user) for user in rec.data.events.user_ids[1:]]
    last = {user: raw_events(rec, user)[-1][1] for user in users}
    latest = sorted(users, key=lambda user: last[user])[-5:]
    assert {user for user in users if user in rec.cache} == set(latest)


async def get_health(app) -> dict:
    """``GET /health`` from ``app``, between its start and its end (its lifespan)."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://serve") as client:
            return (await client.get("/health")).json()


def test_serve_warm_caches_every_known_user_before_listening(run_dir, monkeypatch, capsys):
    """``deepm3 serve --warm``: the app that uvicorn would serve already holds every known
    user's state (its /health says so), and stderr says how long warming took."""
    served = []
    monkeypatch.setattr(server.uvicorn, "run", lambda app, **_: served.append(app))
    monkeypatch.setattr(gc, "freeze", lambda: None)  # keep this test process's GC as it was
    assert main(["serve", str(run_dir), "--warm", "--max-replay", "6"]) == 0
    health = asyncio.run(get_health(served[0]))
    assert health["cache"]["users"] == health["known_users"] > 0 and health["max_replay"] == 6
    assert f"warmed {health['known_users']} of {health['known_users']} known users" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize("k", [1, 4, 7])
def test_max_replay_scores_the_last_k_events_as_if_sent_alone(run_dir, k):
    """max_replay=k answers a 9-event history (and a known user) with the scores of a full
    replay of only its last k events sent by hand; the whole history scores differently."""
    short, full = recommender(run_dir, max_replay=k), recommender(run_dir)
    user = str(full.data.events.user_ids[1])
    events = raw_events(full, user)
    assert len(events) > 9
    at = events[-1][1] + LATER
    assert_same_scores(
        every_score(short, events=events[-9:], at=at), every_score(full, events=events[-k:], at=at)
    )
    assert_same_scores(
        every_score(short, user=user, at=at), every_score(full, events=events[-k:], at=at)
    )
    whole = every_score(full, events=events[-9:], at=at)
    cut = every_score(short, events=events[-9:], at=at)
    assert max(abs(whole[item] - cut[item]) for item in whole) > 1e-4
    answer = short.recommend(events[-9:], at=at)
    assert f"history of 9 events truncated to the last {k}" in answer.notes


def test_max_replay_above_max_len_reads_max_len(run_dir):
    rec = recommender(run_dir, max_replay=500)
    assert rec.max_replay == rec.max_len == 10


@pytest.mark.parametrize("value", [0, -3, 2.5, True, "4", float("nan")])
def test_a_bad_max_replay_is_one_clean_error(run_dir, value):
    with pytest.raises(ConfigError, match="max_replay must be an integer from 1 to") as error:
        recommender(run_dir, max_replay=value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("command", ["recommend", "serve"])
@pytest.mark.parametrize(
    ("value", "phrase"),
    [("0", "max_replay must be an integer from 1"), ("-2", "max_replay must be an integer from 1")],
)
def test_cli_refuses_a_bad_max_replay_in_one_line(
    run_dir, command, value, phrase, capsys, monkeypatch
):
    monkeypatch.setattr(server.uvicorn, "run", lambda app, **_: pytest.fail("served"))
    assert main([command, str(run_dir), f"--max-replay={value}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("deepm3: error:") and phrase in err and err.count("\n") == 1


def test_cli_refuses_a_non_integer_max_replay(run_dir, capsys):
    with pytest.raises(SystemExit) as exit_code:
        main(["recommend", str(run_dir), "--max-replay", "2.5"])
    err = capsys.readouterr().err
    assert exit_code.value.code == 2 and "argument --max-replay: invalid int value: '2.5'" in err
    assert "Traceback" not in err


def test_a_cached_state_is_small(run_dir):
    """The cached state of a warmed user (or one added by events) is a row of a (B, d) tensor,
    not a view that keeps the replay's (B, T, d) states alive."""
    rec = recommender(run_dir)
    rec.warm()
    user = str(rec.data.events.user_ids[1])
    state = rec.cache.get(user).state
    hidden = rec.model.item_embedding.weight.shape[1]
    assert state.shape == (hidden,)
    assert state.untyped_storage().nbytes() <= rec.batch_size * hidden * 4
    assert torch.isfinite(state).all()
    rec.add_events("newcomer", raw_events(rec, user)[:5])  # one replay: exactly its own state
    assert rec.cache.get("newcomer").state.untyped_storage().nbytes() == hidden * 4


def test_the_default_replays_the_last_25_of_a_longer_window(tmp_path, monkeypatch):
    """A run that reads 70 events replays the last 25 by default (the measured trade-off in
    docs/serving.md), in Python and in ``deepm3 serve``: the scores of a 60-event history equal
    those of its last 25 events."""
    csv = write_synthetic_csv(tmp_path / "long.csv", num_users=12, min_len=62, max_len=80)
    settings = [*SMALL[:1], "max_len=70", *SMALL[2:], "epochs=1"]
    config = load_config(None, settings, base={"data": {"dataset": str(csv)}})
    run("deepm3", config, tmp_path / "run")
    default, everything = (
        recommender(tmp_path / "run"),
        recommender(tmp_path / "run", max_replay=None),
    )
    assert (default.max_replay, everything.max_replay) == (25, 70)
    events = raw_events(default, str(default.data.events.user_ids[1]))[-60:]
    assert_same_scores(
        every_score(default, events=events), every_score(everything, events=events[-25:])
    )
    assert "history of 60 events truncated to the last 25" in default.recommend(events).notes
    served = []
    monkeypatch.setattr(server.uvicorn, "run", lambda app, **_: served.append(app))
    monkeypatch.setattr(gc, "freeze", lambda: None)
    assert main(["serve", str(tmp_path / "run")]) == 0
    assert asyncio.run(get_health(served[0]))["max_replay"] == 25


def test_warm_has_nothing_to_do_for_a_model_without_a_state(tmp_path, monkeypatch, capsys):
    """A count baseline keeps no state: ``--warm`` caches nothing and says so."""
    csv = write_synthetic_csv(tmp_path / "events.csv", num_users=10)
    config = load_config(None, ["max_len=10"], base={"data": {"dataset": str(csv)}})
    run("pop", config, tmp_path / "pop")
    rec = recommender(tmp_path / "pop")
    assert rec.warm()["users"] == 0 and len(rec.cache) == 0
    monkeypatch.setattr(server.uvicorn, "run", lambda app, **_: None)
    monkeypatch.setattr(gc, "freeze", lambda: None)
    assert main(["serve", str(tmp_path / "pop"), "--warm"]) == 0
    assert "--warm: nothing to warm, pop keeps no state" in capsys.readouterr().err
