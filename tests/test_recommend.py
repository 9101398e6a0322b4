"""Recommending from a trained run: the same scores as the evaluator for the same history, ``at``
equal to ``predict_at=target_time``, incremental state equal to a full replay, batching, and a
one-line 4xx reason for every bad request."""

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from synthetic import SMALL_RUN as SMALL
from synthetic import write_synthetic_csv

from deepm3.cli import main
from deepm3.config import EvalConfig, load_config
from deepm3.data.sequences import evaluation_table
from deepm3.errors import ConfigError
from deepm3.eval.evaluator import evaluate
from deepm3.models import build_model, model_options
from deepm3.models.contract import states_at_events
from deepm3.recommend import Recommender, RequestError, parse_request
from deepm3.recommend.auto import normalised_entropy
from deepm3.train.loop import model_scorer
from deepm3.train.run import run

NOW = 2_000_000_000.0  # the synthetic data lies before this clock


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("recommend")
    csv = write_synthetic_csv(folder / "events.csv", num_users=40)
    out = {}
    for label, name, extra in (
        ("deepm3", "deepm3", []),
        ("target", "deepm3", ["predict_at=target_time"]),
        ("decay", "deepm3", ["ode=decay"]),
        ("sasrec", "sasrec", []),
        ("timeattn", "timeattn", ["flow=decay", "predict_at=target_time"]),
        ("pop", "pop", []),
    ):
        settings = ["max_len=10"] if name == "pop" else [*SMALL, "epochs=2", *extra]
        config = load_config(None, settings, base={"data": {"dataset": str(csv)}})
        run(name, config, folder / label)
        out[label] = folder / label
    return out


def recommender(path, **options):
    return Recommender.from_run(path, clock=lambda: NOW, **options)


def raw_history(rec, row_items, row_times):
    real = row_items > 0
    ids = rec.data.events.item_ids[row_items[real]]
    return [[str(i), int(t)] for i, t in zip(ids, row_times[real], strict=True)]


def all_scores(rec, answer):
    return dict(zip(answer.items, answer.scores, strict=True))


@pytest.mark.parametrize("label", ["deepm3", "decay", "sasrec", "pop"])
def test_recommend_ranks_like_the_evaluator_for_test_users(runs, label):
    """Each test user's history, sent as raw events, ranked by recommend over every item: the
    scores are those :func:`deepm3.eval.evaluator.evaluate` scored, and the test target sits
    where the evaluator ranks it (its own masking of every item seen before, not only the
    window's; a target seen before ranks last there and is absent here)."""
    rec = recommender(runs[label])
    model_scores = rec.scorer if rec.model is None else model_scorer(rec.model)
    scored = []

    def recording(batch):
        scores = model_scores(batch)
        scored.append((batch.users.clone(), scores.detach().float().clone()))
        return scores

    # several chunks of users, in the evaluator's order (by history length)
    result = evaluate(recording, rec.data, "test", EvalConfig(eval_batch_size=16))
    table = evaluation_table(rec.data, "test")
    pairs = (
        (int(u), row) for users, scores in scored for u, row in zip(users, scores, strict=True)
    )
    by_user = dict(pairs)
    assert len(by_user) == len(table)  # every user scored once
    evaluated = torch.stack([by_user[int(user)] for user in table.users])  # (U, N + 1)
    events, ids = rec.data.events, rec.data.events.item_ids
    index = {raw: i for i, raw in enumerate(ids.tolist())}
    lengths = rec.data.split.test_pos[table.users]
    assert (lengths > rec.max_len).sum() >= 5  # histories longer than the model's window
    requests = []
    for user, length in zip(table.users, lengths, strict=True):
        rows = slice(events.offsets[user], events.offsets[user] + length)
        history = raw_history(rec, events.items[rows], events.timestamps[rows])
        requests.append(parse_request({"events": history, "k": rec.data.num_items}))
    answers = rec.recommend_many(requests)
    ranks = result.per_user["rank"].to_numpy()
    for row, answer in enumerate(answers):
        columns = [index[item] for item in answer.items]
        assert np.allclose(answer.scores, evaluated[row, columns].numpy(), atol=1e-5), row
        target = ids[table.target[row]]
        if target not in answer.items:  # seen before: masked, ranked last of all items
            assert ranks[row] == rec.data.num_items, row
            continue
        scores = np.array(answer.scores)  # rounded: ties bound the pessimistic rank
        mine = scores[answer.items.index(target)]
        assert (scores > mine).sum() + 1 <= ranks[row] <= (scores >= mine).sum(), row


@pytest.mark.parametrize("label", ["target", "timeattn"])
def test_at_evolves_exactly_as_predict_at_target_time(runs, label):
    """DeepM3 and timeattn trained with predict_at=target_time: ``at`` = a test event's time
    gives the evaluator's scores, and a later ``at`` changes the ranking."""
    rec = recommender(runs[label])
    table = evaluation_table(rec.data, "test")
    rows = np.arange(min(8, len(table)))
    with torch.no_grad():  # the evaluator's scores: evolved to each test event's time
        expected = model_scorer(rec.model)(table.batch(rows)).float()
    changed = 0
    everything = rec.data.num_items
    for row in rows:
        events = raw_history(rec, table.items[row], table.timestamps[row])
        at = int(table.target_time[row])
        answer = rec.recommend(events, at=at, k=everything, include_history=True)
        got = all_scores(rec, answer)
        ids = rec.data.events.item_ids
        want = {ids[i]: float(expected[row, i]) for i in range(1, everything + 1)}
        assert max(abs(got[i] - want[i]) for i in want) < 1e-5
        later = rec.recommend(events, at=at + 30 * 86_400, k=everything, include_history=True)
        now = rec.recommend(events, k=everything, include_history=True)
        changed += later.items != now.items
    assert changed > 0  # a later query time changes the ranking


@pytest.mark.parametrize("label", ["deepm3", "decay"])
def test_incremental_state_equals_a_full_replay(runs, label):
    """Events added one by one are absorbed without replaying (one forward pass, for the first
    event), and a query evolves the cached state without any forward pass: the same scores as
    replaying the whole history."""
    rec = recommender(runs[label])
    forwards = []  # the batch size of every forward pass (twins share the hooks)
    rec.model.register_forward_hook(lambda module, inputs, output: forwards.append(len(inputs[0])))
    table = evaluation_table(rec.data, "test")
    for row in range(3):
        events = raw_history(rec, table.items[row], table.timestamps[row])
        assert len(events) > 2
        user = f"new-{row}"
        forwards.clear()
        for event in events:  # one event at a time, each absorbed in one step
            rec.add_events(user, [event])
        assert forwards == [1]  # the first event only: the others were absorbed
        at = events[-1][1] + 5 * 86_400
        everything = rec.data.num_items
        cached = all_scores(rec, rec.recommend(user=user, at=at, k=everything))
        rec.recommend(user=user, k=everything)  # no query time: the cached state as it is
        assert forwards == [1], "a cached user's query replayed the history"
        replay = all_scores(rec, rec.recommend(events, at=at, k=everything))
        assert forwards == [1, 1]
        assert cached.keys() == replay.keys()
        assert max(abs(cached[i] - replay[i]) for i in replay) < 1e-5
    known = rec.data.events.user_ids[1]
    rec.add_events(known, [])  # a known user: the data's history, replayed once
    assert len(rec.cache) == 4 and rec.cache.nbytes() > 0


def test_at_changes_a_decay_ranking_only_through_the_closed_form(runs):
    """ode=decay: the scores at a later ``at`` are the item table against the state after the
    last event relaxed over the gap to ``at``, written out here from the model's parameters;
    without ``at``, against that state itself. A solver asked for is ignored (exact)."""
    rec = recommender(runs["decay"])
    model, table = rec.model, evaluation_table(rec.data, "test")
    weight, bias = model.decay.coefficients.weight, model.decay.coefficients.bias
    size, everything = weight.shape[1], rec.data.num_items
    ids = rec.data.events.item_ids
    changed = 0
    for row in range(8):
        batch = table.batch(np.array([row]))
        events = raw_history(rec, table.items[row], table.timestamps[row])
        at = events[-1][1] + 30 * 86_400
        gap = float(np.log1p(30 * 24))  # log1p(hours), the gap transform
        with torch.no_grad():
            h = states_at_events(model, batch.items, batch.timestamps, batch.time_gaps)[:, -1]
            pre = h @ weight.T + bias
            target, rate = torch.tanh(pre[:, :size]), torch.sigmoid(pre[:, size:])
            relaxed = target + (h - target) * torch.exp(
                -model.options.lipschitz_constant * rate * gap
            )
            expected = {
                "now": (model.readout(h) @ model.item_embedding.weight.T)[0],
                "later": (model.readout(relaxed) @ model.item_embedding.weight.T)[0],
            }
        answers = {
            "now": rec.recommend(events, k=everything, include_history=True),
            "later": rec.recommend(events, at=at, k=everything, include_history=True),
        }
        for key, answer in answers.items():
            got = all_scores(rec, answer)
            assert (
                max(abs(got[ids[i]] - float(expected[key][i])) for i in range(1, 1 + everything))
                < 1e-5
            )
            assert answer.solver is None
        changed += answers["later"].items != answers["now"].items
        asked = rec.recommend(events, at=at, k=everything, include_history=True, solver="rk4")
        assert asked.scores == answers["later"].scores and asked.solver is None
        assert any("solver ignored" in note for note in asked.notes)
    assert changed > 0  # a later query time changes the ranking


def test_a_model_that_cannot_absorb_keeps_the_window_and_replays_it_to_the_query_time(runs):
    """timeattn evolves to ``at`` but absorbs no event (absorbs_events False): events added one
    by one leave no cached state, and a cached user's query replays the window (one forward
    pass per query) and scores exactly as sending the whole history with the same ``at``."""
    rec = recommender(runs["timeattn"])
    assert rec.scoring.evolves and not rec.scoring.absorbs
    forwards = []
    rec.model.register_forward_hook(lambda module, inputs, output: forwards.append(len(inputs[0])))
    table = evaluation_table(rec.data, "test")
    everything = rec.data.num_items
    for row in range(3):
        events = raw_history(rec, table.items[row], table.timestamps[row])
        for event in events:
            rec.add_events(f"w{row}", [event])
        assert forwards == [] and rec.cache.get(f"w{row}").state is None
        at = events[-1][1] + 5 * 86_400
        cached = all_scores(rec, rec.recommend(user=f"w{row}", at=at, k=everything))
        direct = all_scores(rec, rec.recommend(events[-rec.max_len :], at=at, k=everything))
        now = all_scores(rec, rec.recommend(user=f"w{row}", k=everything))
        assert forwards == [1, 1, 1]
        forwards.clear()
        assert cached.keys() == direct.keys()
        assert max(abs(cached[i] - direct[i]) for i in direct) < 1e-6
        assert max(abs(cached[i] - now[i]) for i in now) > 1e-4  # at moved the scores


def test_cached_users_are_answered_together_like_one_by_one(runs):
    rec = recommender(runs["deepm3"], batch_size=2)
    table = evaluation_table(rec.data, "test")
    requests = []
    for row in range(5):
        events = raw_history(rec, table.items[row], table.timestamps[row])
        rec.add_events(f"c{row}", events)
        at = events[-1][1] + row * 86_400  # row 0: at the last event, no evolution
        requests.append(parse_request({"user": f"c{row}", "at": at, "k": 20, "solver": "rk4"}))
    together = rec.recommend_many(requests)
    for request, answer in zip(requests, together, strict=True):
        alone = rec.recommend_many([request])[0]
        assert answer.items == alone.items and answer.solver == "rk4"
        assert np.allclose(answer.scores, alone.scores, atol=1e-5)
    early = parse_request({"user": "c1", "at": 1})
    assert "earlier than the last event" in str(rec.recommend_many([early])[0])


@pytest.mark.parametrize("label", ["deepm3", "pop"])
def test_a_batch_of_mixed_requests_is_ranked_like_each_alone(runs, label):
    """One topk for the batch: each row keeps its own k, its own mask (its seen items unless it
    includes its history) and its own answer, as if it had come alone."""
    rec = recommender(runs[label])
    table = evaluation_table(rec.data, "test")
    requests, seen = [], []
    for row, k in enumerate((1, 5, 20, rec.data.num_items, 3, rec.data.num_items)):
        events = raw_history(rec, table.items[row], table.timestamps[row])
        seen.append({item for item, _ in events})
        payload = {"events": events, "k": k, "include_history": row % 2 == 1}
        requests.append(parse_request(payload))
    together = rec.recommend_many(requests)
    for row, (request, answer) in enumerate(zip(requests, together, strict=True)):
        alone = rec.recommend_many([request])[0]
        assert answer.items == alone.items and np.allclose(answer.scores, alone.scores, atol=1e-6)
        expected = min(request.k, rec.data.num_items - (0 if row % 2 else len(seen[row])))
        assert len(answer.items) == expected, row
        assert len(set(answer.items)) == len(answer.items)
        overlap = seen[row] & set(answer.items)
        assert (overlap == set()) if row % 2 == 0 else (len(overlap) > 0 or request.k < 20), row


@pytest.mark.parametrize(
    ("user", "events", "reason"),
    [(None, [["i1", 1_000_000_000]], "needs a user"), ("u", [5], r"events\[0\] must be")],
)
def test_add_events_rejects_bad_input_with_a_request_error(runs, user, events, reason):
    rec = recommender(runs["deepm3"])
    with pytest.raises(RequestError, match=reason):
        rec.add_events(user, events)


def test_the_state_cache_is_bounded(runs):
    rec = recommender(runs["deepm3"], cache_size=2)
    item = rec.data.events.item_ids[1]
    for user in ("a", "b", "c"):
        rec.add_events(user, [[item, 1_000_000_000]])
    assert len(rec.cache) == 2 and "a" not in rec.cache and rec.cache.evictions == 1
    entry = rec.cache.get("c")
    assert entry.nbytes() == 4 * 8 + 3 * 8  # state (d=8 float32) + seen + window item and time


def test_requests_are_answered_in_batches(runs):
    rec = recommender(runs["deepm3"], batch_size=16)
    item = rec.data.events.item_ids[1]
    calls = []
    rec.model.register_forward_hook(lambda module, inputs, output: calls.append(len(inputs[0])))
    requests = [parse_request({"events": [[item, 1_000_000_000 + n]]}) for n in range(40)]
    answers = rec.recommend_many(requests)
    assert len(answers) == 40 and calls == [16, 16, 8]


def test_auto_solver_refines_uncertain_answers_with_rk4(runs):
    item = "i1"
    base = {"events": [[item, 1_000_000_000], [item, 1_000_090_000]], "k": 5}
    everyone = recommender(runs["deepm3"], auto_threshold=0.0, auto_budget_ms=1e6)
    nobody = recommender(runs["deepm3"], auto_threshold=1.0, auto_budget_ms=1e6)
    broke = recommender(runs["deepm3"], auto_threshold=0.0, auto_budget_ms=0.0)
    auto = parse_request({**base, "solver": "auto"})
    rk4 = everyone.recommend_many([parse_request({**base, "solver": "rk4"})])[0]
    refined = everyone.recommend_many([auto])[0]
    assert refined.solver == "rk4" and refined.scores == rk4.scores
    assert nobody.recommend_many([auto])[0].solver == "euler"
    assert broke.recommend_many([auto])[0].solver == "euler"  # no budget left for RK4
    uniform = normalised_entropy(torch.zeros(1, 50))
    peaked = normalised_entropy(torch.tensor([[50.0] + [0.0] * 49]))
    assert torch.allclose(uniform, torch.ones(1)) and peaked.item() < 0.01


def test_models_without_a_flow_say_that_at_and_solver_are_ignored(runs):
    rec = recommender(runs["sasrec"])
    answer = rec.recommend([["i1", 1_000_000_000]], at=1_100_000_000, solver="rk4")
    assert any("at ignored" in n for n in answer.notes)
    assert any("solver ignored" in n for n in answer.notes) and answer.solver is None


@pytest.mark.parametrize(
    "payload, reason",
    [
        ({"events": [["1", 1_000_000_000], ["2", 999_999_999]]}, "in time order"),
        ({"events": [["1", 2_100_000_000]]}, "lies in the future"),
        ({"events": [["no-such-item", 1_000_000_000]]}, "no known item"),
        ({"events": [["i1", 1_000_000_000]], "at": 999}, "earlier than the last event"),
        ({"user": "nobody-knows"}, "unknown user"),
        ({}, "needs a known user id or at least one event"),
        ({"events": "1"}, "must be a list"),
        ({"events": [["1"]]}, "[item, unix_time] pair"),
        ({"events": [["1", "yesterday"]]}, "unix seconds"),
        ({"events": [["1", -5]]}, "between 0 and"),
        ({"events": [["1", 1e300]]}, "between 0 and"),
        ({"events": [["1", 1]], "k": 0}, "k must be"),
        ({"events": [["1", 1]], "k": True}, "k must be"),
        ({"events": [["1", 1]], "solver": "heun"}, "solver must be one of"),
        ({"events": [["1", 1]], "colour": "red"}, "unknown request key"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_every_bad_request_gets_one_line_and_a_4xx(runs, payload, reason):
    rec = recommender(runs["deepm3"])
    try:
        answer = rec.recommend_many([parse_request(payload)])[0]
    except RequestError as error:
        answer = error
    assert isinstance(answer, RequestError) and reason in str(answer), answer
    assert 400 <= answer.status < 500 and "\n" not in str(answer)


def test_unknown_items_are_ignored_and_reported_or_rejected(runs):
    events = [["i1", 1_000_000_000], ["zz-unknown", 1_000_000_100]]
    answer = recommender(runs["deepm3"]).recommend(events)
    assert answer.notes == ["ignored 1 unknown item(s): 'zz-unknown'"]
    with pytest.raises(RequestError, match="unknown item"):
        recommender(runs["deepm3"], unknown_items="reject").recommend(events)


def test_a_long_history_is_truncated_and_reported(runs):
    rec = recommender(runs["deepm3"])
    events = [[rec.data.events.item_ids[1 + n % 5], 1_000_000_000 + n] for n in range(25)]
    answer = rec.recommend(events)
    assert "history of 25 events truncated to the last 10" in answer.notes


def test_cli_reads_and_writes_json_lines(runs, tmp_path, capsys):
    requests = tmp_path / "requests.jsonl"
    lines = [
        json.dumps({"events": [["i1", 1_000_000_000]], "k": 3, "id": "a"}),
        "{not json",
        json.dumps({"events": [["i1", 1_000_000_000]], "at": 999, "id": "b"}),
        json.dumps({"user": "u1", "k": 2}),
    ]
    requests.write_text("\n".join(lines) + "\n")
    answers = tmp_path / "answers.jsonl"
    code = main(
        ["recommend", str(runs["deepm3"]), "--input", str(requests), "--output", str(answers)]
    )
    records = [json.loads(line) for line in answers.read_text().splitlines()]
    assert code == 1 and len(records) == 4
    assert records[0]["id"] == "a" and len(records[0]["items"]) == 3
    assert records[1]["line"] == 2 and records[1]["status"] == 400
    assert records[2]["line"] == 3 and "earlier than the last event" in records[2]["error"]
    assert len(records[3]["items"]) == 2 and records[3]["user"] == "u1"
    assert "2 answered, 2 failed" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["--device", "foo"], "--device must be one of"),
        (["--batch-size", "0"], "batch_size must be from 1"),
        (["--batch-size", "-5"], "batch_size must be from 1"),
    ],
)
def test_cli_refuses_bad_recommend_options_in_one_line(runs, args, phrase, capsys):
    assert main(["recommend", str(runs["deepm3"]), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("deepm3: error:") and phrase in err and err.count("\n") == 1


def test_bad_recommender_settings_are_refused(runs):
    with pytest.raises(ConfigError, match="auto_threshold"):
        recommender(runs["pop"], auto_threshold=float("nan"))
    with pytest.raises(ConfigError, match="cache_size"):
        recommender(runs["pop"], cache_size=0)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
EVENT = st.tuples(st.sampled_from(["i1", "i2", "zz", 7]), st.integers(0, 2_100_000_000))
REQUEST = st.fixed_dictionaries(
    {},
    optional={  # each key: a plausible value or any JSON
        "user": st.sampled_from(["u1", "u2", "nobody", ""]) | JSON,
        "events": st.lists(EVENT.map(list) | st.lists(JSON, max_size=3), max_size=4) | JSON,
        "at": st.integers(0, 2_100_000_000) | JSON,
        "k": st.integers(-1, 1100) | JSON,
        "solver": st.sampled_from(["euler", "rk4", "auto"]) | JSON,
        "include_history": st.booleans() | JSON,
    },
)

VALIDISH = st.fixed_dictionaries(  # well-formed: what the model itself must check
    {"events": st.lists(EVENT.map(list), min_size=1, max_size=4)},
    optional={
        "user": st.sampled_from(["u1", "u2", "nobody"]),
        "at": st.integers(0, 2_100_000_000),
        "k": st.integers(1, 50),
        "solver": st.sampled_from(["euler", "rk4", "auto"]),
        "include_history": st.booleans(),
    },
)


IN_ORDER = st.lists(  # known items and an unknown one, in time order, before the clock
    st.tuples(st.sampled_from(["i1", "i2", "i3", "zz"]), st.integers(1_000_000_000, 1_100_000_000)),
    min_size=1,
    max_size=4,
).map(lambda events: [list(event) for event in sorted(events, key=lambda event: event[1])])
PLAUSIBLE = st.fixed_dictionaries(  # well-formed and mostly answerable (no known user)
    {"events": IN_ORDER},
    optional={
        "at": st.integers(1_100_000_000, 1_900_000_000),
        "k": st.integers(1, 50),
        "solver": st.sampled_from(["euler", "rk4", "auto"]),
        "include_history": st.booleans(),
    },
)


def answered(rec: Recommender, payload) -> bool:
    """Whether ``payload`` got an answer from the model; parse_request and recommend_many must
    raise nothing but a RequestError, a refusal must be one line with a 4xx status, and an
    answer at most k finite scores."""
    try:
        request = parse_request(payload)
    except RequestError as error:
        assert 400 <= error.status < 500 and "\n" not in str(error)
        return False
    (answer,) = rec.recommend_many([request])
    if isinstance(answer, RequestError):
        assert 400 <= answer.status < 500 and "\n" not in str(answer)
        return False
    assert len(answer.items) <= request.k and all(np.isfinite(answer.scores))
    return True


def test_generated_requests_are_answered_or_refused_and_many_reach_the_model(runs):
    """Generated requests (plausible, well-formed, malformed, any JSON) are answered or refused
    with a RequestError, and a fair share of them reaches the model and is answered (the
    generator does not only produce refusals)."""
    rec = recommender(runs["deepm3"])
    outcomes: list[bool] = []

    @settings(max_examples=150, deadline=None)
    @given(payload=PLAUSIBLE | VALIDISH | REQUEST | JSON)
    def check(payload) -> None:
        outcomes.append(answered(rec, payload))

    check()
    assert sum(outcomes) >= 0.15 * len(outcomes), f"{sum(outcomes)} of {len(outcomes)} answered"


def test_a_run_trained_on_a_gpu_is_served_on_the_cpu_with_device(runs, tmp_path):
    """A run records train.device; --device replaces it, so a CUDA-trained run serves here."""
    import shutil

    gpu_run = tmp_path / "gpu-run"
    shutil.copytree(runs["deepm3"], gpu_run)
    config = json.loads((gpu_run / "config.json").read_text())
    config["train"]["device"] = "cuda"
    (gpu_run / "config.json").write_text(json.dumps(config))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="cuda"):
            recommender(gpu_run)
    rec = recommender(gpu_run, device="cpu")
    assert rec.device.type == "cpu" and rec.recommend([["i1", 1_000_000_000]], k=3).items


def test_models_declare_whether_they_evolve_to_a_query_time():
    """The contract's capability flags: only a model with a flow evolves (DeepM3, timeattn: its
    advance moves a state over a gap), only DeepM3's state absorbs events, and its twin for
    another method shares every weight."""
    for name, values, evolves in (
        ("deepm3", {}, True),
        ("deepm3", {"ode": "none"}, False),
        ("deepm3", {"ode": "decay"}, True),
        ("sasrec", {}, False),
        ("tisasrec", {}, False),
        ("gru4rec", {}, False),
        ("timeattn", {}, False),
        ("timeattn", {"flow": "decay", "predict_at": "target_time"}, True),
    ):
        model = build_model(name, 10, model_options(name, values), 5)
        assert model.evolves_to_query_time is evolves, (name, values)
        # only a recurrent state absorbs one event; attention replays its window
        assert model.absorbs_events is (evolves and name == "deepm3"), (name, values)
    model_with_flow = build_model("deepm3", 10, model_options("deepm3", {}), 5).eval()
    twin = model_with_flow.with_solver("rk4")
    assert (model_with_flow.solver, twin.solver) == ("euler", "rk4")
    assert all(a is b for a, b in zip(model_with_flow.parameters(), twin.parameters(), strict=True))
    h = torch.randn(2, model_with_flow.item_embedding.embedding_dim)
    gaps, last = torch.tensor([0.0, 2.0]), torch.tensor([0, 10**9])
    with torch.no_grad():
        euler, rk4 = model_with_flow.advance(h, gaps, last)[0], twin.advance(h, gaps, last)[0]
    assert torch.equal(euler[0], h[0]) and not torch.allclose(euler[1], h[1])
    assert not torch.allclose(euler[1], rk4[1])
