"""The experiment suite: analyses with known answers, run identity and resumption, and the
smoke budget end to end (every stage, on ML-100K)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from spies import record_evaluations
from synthetic import REPO

from deepm3.cli import main
from deepm3.config import EvalConfig
from deepm3.data.sequences import evaluation_table, with_history
from deepm3.errors import DeepM3Error
from deepm3.eval.evaluator import evaluate
from deepm3.models import build_model, model_options
from deepm3.stats import effects as tables
from deepm3.stats import perturbation_grid as perturbations
from deepm3.stats.significance import per_user_ndcg
from deepm3.suite.design import RunSpec
from deepm3.suite.layout import Layout
from deepm3.suite.pool import Execution
from deepm3.suite.training import RunJob, Source, execute, is_done, plan, publish
from deepm3.train import loop
from deepm3.train.loop import model_scorer
from deepm3.train.rundir import read_json

GRID = perturbations.build((0.0, 24.0), (0.0, 0.5), 3)


def _ranks_under(model, data, keys) -> dict[str, np.ndarray]:
    """Test ranks of an (untrained, eval-mode) model, clean and under each perturbation."""
    scorer = model_scorer(model.eval())
    table = evaluation_table(data, "test")
    history = (table.items, table.timestamps, table.target_time)
    config = EvalConfig()
    ranks = {"clean": evaluate(scorer, data, "test", config).per_user["rank"].to_numpy()}
    for perturbation in GRID:
        if perturbation.key in keys:
            changed = perturbation.apply(history, perturbations.rng_for(perturbation.key, 0))
            result = evaluate(scorer, data, "test", config, table=with_history(table, *changed))
            ranks[perturbation.key] = result.per_user["rank"].to_numpy()
    return ranks


def _model(name: str, data, **options):
    torch.manual_seed(0)
    return build_model(name, data.num_items, model_options(name, options), data.max_len)


TIME_KEYS = [p.key for p in GRID if p.group == "time"] + ["paper_drop", "jitter_kept:24"]


@pytest.mark.parametrize("name", ["sasrec", "gru4rec"])
def test_time_blind_models_have_zero_time_sensitivity(synthetic, name):
    ranks = _ranks_under(_model(name, synthetic), synthetic, TIME_KEYS)
    for key in TIME_KEYS:
        assert np.array_equal(ranks[key], ranks["clean"]), key


def test_time_reading_models_do_move_under_time_changes(synthetic):
    """The control of the control: DeepM3 and TiSASRec read time, so their ranks change."""
    for name in ("deepm3", "tisasrec"):
        ranks = _ranks_under(_model(name, synthetic, dropout=0.0), synthetic, TIME_KEYS)
        assert any(not np.array_equal(ranks[k], ranks["clean"]) for k in TIME_KEYS), name


def test_zero_noise_levels_give_the_clean_ranks_exactly(synthetic):
    ranks = _ranks_under(
        _model("deepm3", synthetic), synthetic, ["jitter_kept:0", "jitter_sorted:0", "dropout:0"]
    )
    for key in ("jitter_kept:0", "jitter_sorted:0", "dropout:0"):
        assert np.array_equal(ranks[key], ranks["clean"]), key
    effects = tables.perturbation_effects(
        [pd.DataFrame({"user": np.arange(len(ranks["clean"])), **ranks})], ["dropout:0"]
    )
    assert effects.loc[0, "relative"] == 0.0
    assert effects.loc[0, "ci_low"] == effects.loc[0, "ci_high"] == 0.0


def test_zeroed_time_reaches_the_target_time_too():
    history = (np.array([[0, 3, 4]]), np.array([[0, 100, 200]]), np.array([300]))
    zeroed = next(p for p in GRID if p.key == "time_zeroed")
    items, times, target = zeroed.apply(history, np.random.default_rng(0))
    assert (
        items.tolist() == [[0, 3, 4]] and times.tolist() == [[0, 0, 0]] and target.tolist() == [0]
    )


def test_irregularity_groups_match_a_hand_count():
    users = np.arange(1, 8)
    cv = pd.Series([0.6, 0.1, np.nan, 0.4, 0.2, 0.5, 0.3], index=users)
    focus = pd.Series([1.0, 0.0, 1.0, 0.5, 0.0, 1.0, 0.0], index=users)
    other = pd.Series([0.5, 0.5, 0.0, 0.5, 0.5, 0.5, 0.5], index=users)
    groups = tables.irregularity_groups(cv, {"a": focus, "b": other}, "a", 3)
    # by CV: group 1 = users 2 (0.1), 5 (0.2); group 2 = 7 (0.3), 4 (0.4); group 3 = 6, 1
    assert groups["users"].tolist() == [2, 2, 2]
    assert groups["ndcg:a"].tolist() == [0.0, 0.25, 1.0]
    assert groups["ndcg:b"].tolist() == [0.5, 0.5, 0.5]
    assert groups["gain:b"].tolist() == pytest.approx([-1.0, -0.5, 1.0])
    assert groups["cv_min"].tolist() == pytest.approx([0.1, 0.3, 0.5])


def test_significance_agrees_with_scipy_and_holm():
    rng = np.random.default_rng(3)
    users = np.arange(200)
    ranks = {name: rng.integers(1, 40, size=200) for name in ("focus", "x", "y")}
    ndcg = {name: pd.Series(per_user_ndcg(r, 10), index=users) for name, r in ranks.items()}
    frame = tables.significance(ndcg, "focus").set_index("baseline")
    raw = {
        name: stats.wilcoxon(ndcg["focus"], ndcg[name], zero_method="wilcox").pvalue
        for name in ("x", "y")
    }
    for name in ("x", "y"):
        assert frame.loc[name, "wilcoxon_p"] == pytest.approx(raw[name])
        assert frame.loc[name, "t_p"] == pytest.approx(
            stats.ttest_rel(ndcg["focus"], ndcg[name]).pvalue
        )
    low, high = sorted(raw.values())
    expected = {
        min(raw, key=raw.get): min(1, 2 * low),
        max(raw, key=raw.get): min(1, max(2 * low, high)),
    }
    for name, value in expected.items():
        assert frame.loc[name, "wilcoxon_p_holm"] == pytest.approx(value)


def test_significance_pairs_users_by_id_not_by_position():
    """Rows list their users in different orders and not all the same users: each comparison
    pairs a user's two values (only users both rows ranked), as a by-hand pairing does."""
    rng = np.random.default_rng(5)
    users = np.arange(1, 301)
    focus = pd.Series(rng.random(300), index=users)
    # the baseline: each user's focus value a little lower, listed in another order, some users
    # missing and others added (e.g. eval_users samples or a failed user)
    kept = rng.permutation(users)[:250]
    shifted = focus.loc[kept] - 0.01 - 0.005 * rng.random(250)
    extra = pd.Series(rng.random(40), index=np.arange(1000, 1040))
    baseline = pd.concat([shifted, extra]).sample(frac=1.0, random_state=1)
    frame = tables.significance({"focus": focus, "base": baseline}, "focus").set_index("baseline")
    common = [user for user in focus.index if user in set(baseline.index)]
    a = np.array([focus[user] for user in common])
    b = np.array([baseline[user] for user in common])
    assert len(common) == 250
    row = frame.loc["base"]
    assert row["mean_a"] == pytest.approx(a.mean()) and row["mean_b"] == pytest.approx(b.mean())
    assert row["relative"] == pytest.approx(a.mean() / b.mean() - 1)
    assert row["wilcoxon_p"] == pytest.approx(stats.wilcoxon(a, b, zero_method="wilcox").pvalue)
    assert row["t_p"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert row["wilcoxon_p"] < 1e-30  # every paired difference is positive


def test_seed_interval_by_hand():
    mean, sd, half = tables.seed_interval([1.0, 2.0, 3.0])
    assert (mean, sd) == (2.0, 1.0)
    assert half == pytest.approx(4.302652729911275 / np.sqrt(3))
    assert np.isnan(tables.seed_interval([0.5])[2])


def test_mean_user_ndcg_averages_seeds_by_user():
    a = pd.Series([1, 11], index=[7, 9])
    b = pd.Series([11, 1], index=[9, 7])  # same users, other order
    assert tables.mean_user_ndcg([a, b]).to_dict() == {7: 1.0, 9: 0.0}


# --- run identity, skipping and resuming


@dataclasses.dataclass(frozen=True)
class Place:
    """Where and how the tests run suite runs (the suite passes these three separately)."""

    source: Source
    layout: Layout
    execution: Execution = Execution()

    def job(self, spec: RunSpec) -> RunJob:
        return RunJob(plan(spec, self.source, self.execution), self.layout)

    def folder(self, spec: RunSpec):
        return self.layout.run_dir(spec.stage, spec.name)


@pytest.fixture()
def place(tmp_path, synthetic_csv):
    return Place(Source(str(synthetic_csv), None), Layout(tmp_path / "runs", tmp_path / "out"))


@pytest.fixture(scope="module")
def synthetic_csv(tmp_path_factory):
    from synthetic import write_synthetic_csv

    return write_synthetic_csv(tmp_path_factory.mktemp("suite") / "events.csv")


def _spec(**train):
    sections = {
        "data": {"max_len": 10},
        "train": {"epochs": 3, "patience": 5, **train},
        "model": {"hidden_size": 16},
    }
    return RunSpec("core", "gru4rec", "gru4rec", 0, sections)


def _killed_in_epoch_two(place, spec, monkeypatch):
    """Run ``spec`` until it is killed in its second epoch (last.pt holds epoch 1); returns
    the real epoch function, for the test to put back."""
    original = loop._run_epoch

    def dies_in_epoch_two(*args, **kwargs):
        if args[5] == 2:  # (trainer, model, optimizer, table, config, epoch, device, ...)
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(loop, "_run_epoch", dies_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        execute(place.job(spec))
    return original


def test_a_killed_run_resumes_and_a_finished_run_is_skipped(place, monkeypatch):
    spec = _spec()
    original = _killed_in_epoch_two(place, spec, monkeypatch)
    folder = place.folder(spec)
    first_line = (folder / "log.jsonl").read_text().splitlines()[0]
    assert not (folder / "metrics.json").exists() and (folder / "last.pt").is_file()
    assert not is_done(place.job(spec).planned, place.layout)

    monkeypatch.setattr(loop, "_run_epoch", original)
    metrics = execute(place.job(spec))
    log = (folder / "log.jsonl").read_text().splitlines()
    assert metrics["epochs_run"] == 3 and len(log) == 3 and log[0] == first_line  # resumed
    assert is_done(place.job(spec).planned, place.layout)

    stamp = (folder / "metrics.json").stat().st_mtime_ns
    monkeypatch.setattr(loop, "_run_epoch", lambda *a: pytest.fail("a finished run was redone"))
    assert execute(place.job(spec)) == read_json(folder / "metrics.json")
    assert (folder / "metrics.json").stat().st_mtime_ns == stamp


def test_a_checkpoint_of_other_settings_is_never_resumed(place, tmp_path, monkeypatch):
    """A run killed with one config leaves last.pt; the same row with changed settings (another
    config hash) starts again: its results equal those of a fresh run of the new settings."""
    spec, changed = _spec(), _spec(lr=0.01)
    original = _killed_in_epoch_two(place, spec, monkeypatch)
    folder = place.folder(changed)
    assert folder == place.folder(spec) and (folder / "last.pt").is_file()
    monkeypatch.setattr(loop, "_run_epoch", original)
    job = place.job(changed)
    metrics = execute(job)
    assert read_json(folder / "suite.json")["hash"] == job.planned.digest
    assert read_json(folder / "config.json")["train"]["lr"] == 0.01
    elsewhere = Place(place.source, Layout(tmp_path / "clean-runs", tmp_path / "clean-out"))
    fresh = execute(elsewhere.job(changed))
    for key in ("valid", "test", "best_epoch", "epochs_run"):
        assert metrics[key] == fresh[key], key
    fresh_log = (elsewhere.folder(changed) / "log.jsonl").read_text().splitlines()
    log = (folder / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["loss"] for line in log] == [
        json.loads(line)["loss"] for line in fresh_log
    ]


def _search_budget(place, epochs: int, trials: int):
    """A tiny search budget on the synthetic data: ``trials`` trials of ``epochs`` epochs."""
    from deepm3.suite.budgets import BUDGETS

    return dataclasses.replace(
        BUDGETS["smoke"],
        dataset=place.source.dataset,
        data={"max_len": 10},
        train={"epochs": epochs, "patience": epochs, "batch_size": 64},
        trials=trials,
        trial_train={"epochs": epochs},
        widths=(8,),
    )


def test_search_trials_never_touch_the_test_split(place, monkeypatch):
    """A search trial (Optuna's objective, in this process) validates and never evaluates the
    test split, whichever module would call the evaluator."""
    import optuna

    from deepm3.suite.search import Search, _objective

    budget = _search_budget(place, epochs=2, trials=1)
    roles = record_evaluations(monkeypatch)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    search = Search(budget, place.source, place.layout, place.execution, "unused://", ("gru4rec",))
    study.optimize(_objective("gru4rec", search), n_trials=1)
    assert study.trials[0].state == optuna.trial.TrialState.COMPLETE
    assert study.trials[0].user_attrs["epochs_run"] == 2
    assert roles and set(roles) == {"valid"}


def test_changed_settings_change_the_identity_and_records_count_as_done(place, tmp_path):
    spec, other = _spec(), _spec(lr=0.01)
    job, other_job = place.job(spec), place.job(other)
    assert job.planned.digest != other_job.planned.digest
    moved = Place(
        Source(place.source.dataset, "/elsewhere"), place.layout, Execution("cpu", threads=2)
    )
    assert moved.job(spec).planned.digest == job.planned.digest  # machine settings left out
    execute(job)
    publish([job.planned], place.layout)
    record = place.layout.record_dir(spec.stage, spec.name)
    assert read_json(record / "suite.json")["hash"] == job.planned.digest
    assert not any(p.suffix == ".pt" for p in record.iterdir())  # never checkpoints
    fresh = Layout(tmp_path / "fresh-runs", place.layout.out)
    assert is_done(job.planned, fresh)  # a fresh machine continues from the committed records
    assert not is_done(other_job.planned, fresh)


def test_a_stage_publishes_each_run_as_it_ends_so_a_failed_stage_keeps_it(place):
    """Run records reach the results folder as each run ends, not only when the whole stage
    ends: a stage whose other run fails (its folder is blocked by a file) still leaves the
    finished run's record there, the one a fresh machine continues from."""
    from types import SimpleNamespace

    from deepm3.suite.stages import train_stage

    good, bad = _spec(), dataclasses.replace(_spec(), seed=1)
    blocked = place.folder(bad)
    blocked.parent.mkdir(parents=True, exist_ok=True)
    blocked.write_text("not a folder")
    planned = [place.job(good).planned, place.job(bad).planned]
    settings = SimpleNamespace(layout=place.layout, execution=Execution(jobs=1))
    with pytest.raises(DeepM3Error, match="1 job"):
        train_stage("core", planned, settings)
    record = place.layout.record_dir("core", good.name)
    assert read_json(record / "suite.json")["hash"] == planned[0].digest
    assert (record / "metrics.json").is_file()
    assert is_done(planned[0], Layout(place.layout.runs.parent / "fresh", place.layout.out))
    assert not place.layout.record_dir("core", bad.name).exists()


def test_suite_cli_rejects_bad_settings(capsys):
    for args, message in (
        (["--budget", "huge"], "unknown budget 'huge'"),
        (["--skip", "core,serch"], "unknown stage(s) serch"),
        (["--jobs", "0"], "--jobs must be a positive integer or auto"),
    ):
        assert main(["suite", "ml1m", *args]) == 2
        error = capsys.readouterr().err
        assert message in error and len(error.strip().splitlines()) == 1


def test_smoke_budget_runs_every_stage(real_data_dir, tmp_path):
    """BUDGET=smoke end to end through the script: search, seeds, analyses, report."""
    env = {
        **os.environ,
        "DEEPM3_DATA_DIR": str(real_data_dir),
        "BUDGET": "smoke",
        "JOBS": "2",
        "OUT": str(tmp_path / "out"),
        "PY": sys.executable,
    }
    result = subprocess.run(
        ["bash", "scripts/experiments/run_phase2.sh", "--runs", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=400,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = tmp_path / "out"
    best = json.loads((out / "search" / "best.json").read_text())
    assert {entry["trials_counted"] for entry in best.values()} == {2}  # equal budgets
    core = {p.name for p in (out / "core" / "runs").iterdir()}
    assert {"pop-s0", "last_item-s0", "deepm3-s1", "deepm3-noode-s0", "tisasrec-s1"} <= core
    assert len(list((out / "analyses" / "perturb").glob("*.csv.gz"))) == len(core) + 1
    report = (out / "report.md").read_text()
    for heading in (
        "## Claims",
        "## 3. Significance",
        "## 4. Irregular",
        "## 6. Robustness",
        "## 7. Solver",
    ):
        assert heading in report
    for image in ("core.png", "robustness.png", "irregularity.png"):
        assert (out / image).stat().st_size > 1000
    stages = [
        json.loads(line)["stage"] for line in (out / "suite_log.jsonl").read_text().splitlines()
    ]
    assert stages == ["search", "core", "lipschitz", "paper", "analyses", "report"]
    # Run records name no absolute path of this machine (deepm3.portable): the data folder
    # beside the checkout relative to it, the temporary out and runs folders as $TMPDIR/...
    run = out / "core" / "runs" / "deepm3-s0"  # the records a suite commits
    recorded = json.loads((run / "config.json").read_text())["data"]["data_dir"]
    if real_data_dir.resolve().is_relative_to(REPO.parent.resolve()):
        assert not Path(recorded).is_absolute()
    assert (REPO / recorded).resolve() == real_data_dir.resolve()
    command = json.loads((run / "provenance.json").read_text())["command"]
    assert str(tmp_path) not in command and "$TMPDIR/" in command
    # Rerunning skips every finished run.
    again = subprocess.run(
        ["bash", "scripts/experiments/run_phase2.sh", "--runs", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**env, "SKIP_SEARCH": "1", "SKIP_ANALYSES": "1"},
        timeout=200,
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert "core: 16 runs, 16 already done" in again.stdout


def test_make_standard_runs_beauty_then_the_ml1m_subset_and_passes_options_on(tmp_path):
    """``scripts/experiments/standard.sh`` (``make standard``): the Beauty standard suite, then
    ML-1M's, each with the options given (here ``--plan``: nothing runs, no data read)."""
    env = {**os.environ, "PY": sys.executable, "JOBS": "1"}
    result = subprocess.run(
        ["bash", "scripts/experiments/standard.sh", "--plan", "--runs", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    suites = [line for line in result.stdout.splitlines() if line.startswith("suite ")]
    assert [line.split(",")[0] for line in suites] == ["suite amazon", "suite ml1m"]
    assert "budget standard" in suites[0] and "budget standard" in suites[1]
    assert suites[0].endswith("results in results/amazon/amazon-beauty/standard")
    assert suites[1].endswith("results in results/ml1m/standard")
    assert not (tmp_path / "runs").exists()  # a plan runs nothing


# --- verdict rules


def test_interval_verdicts():
    from deepm3.suite.claims import interval_verdict

    assert interval_verdict(0.01, 0.05, 0.01) == "confirmed"
    assert interval_verdict(0.01, 0.05, 0.2) == "inconclusive"  # interval above 0, p too large
    assert interval_verdict(-0.05, -0.01, 0.01) == "refuted"
    assert interval_verdict(-0.01, 0.01, 0.5, claimed=0.0227) == "refuted"  # excludes +2.27%
    assert interval_verdict(-0.01, 0.05, 0.5, claimed=0.0227) == "inconclusive"


def test_robustness_and_latency_verdicts():
    from deepm3.suite import claims

    def focus(lows, highs):
        return pd.DataFrame(
            {
                "key": ["a", "b"],
                "relative": [(lo + hi) / 2 for lo, hi in zip(lows, highs, strict=True)],
                "ci_low": lows,
                "ci_high": highs,
            }
        )

    assert claims.robust(focus([-0.001, -0.002], [0.001, 0.0]))["verdict"] == "confirmed"
    assert claims.robust(focus([-0.001, -0.05], [0.001, -0.01]))["verdict"] == "refuted"
    assert claims.robust(focus([-0.001, -0.05], [0.001, 0.01]))["verdict"] == "inconclusive"
    assert claims.parameters(claims.ParameterFact(1.0, 1.3))["verdict"].startswith("refuted")
    assert claims.parameters(claims.ParameterFact(3.0, 3.4))["verdict"] == "confirmed"


BUDGET_NAMES = ("smoke", "quick", "standard", "full")


@pytest.mark.parametrize("suite,name", [(s, b) for s in ("ml1m", "amazon") for b in BUDGET_NAMES])
def test_every_budget_plans_valid_runs_without_data(suite, name, tmp_path):
    """Every run of every budget resolves to a valid config (no data is read), with distinct
    identities, and the same trial budget and shared settings for every trainable model."""
    from suites import planning_settings

    from deepm3.suite.stages import plan_lines, planned_runs

    settings = planning_settings(suite, name, tmp_path)
    budget = settings.budget
    from deepm3.suite.design import searched_rows

    lines = plan_lines(settings)
    searches = [line.split() for line in lines if line.startswith("search ")]
    assert [words[1] for words in searches] == list(searched_rows(budget))  # nothing run yet
    assert all(words[2:] == [f"0/{budget.trials}", "trials", "to", "run"] for words in searches)
    lines = lines[len(searches) :]
    assert all(line.endswith("to train") for line in lines)
    # a time-off twin may equal another row exactly (the same settings); no other row does
    from deepm3.suite.design import TWIN_ROWS

    hashes = [
        line.split()[2] for line in lines if line.split()[1].rsplit("-s", 1)[0] not in TWIN_ROWS
    ]
    assert len(set(hashes)) == len(hashes)
    trained = [p.spec for p in planned_runs(settings)["core"] if not p.spec.counted]
    assert {len(budget.seeds)} == {
        sum(s.row == r for s in trained) for r in {s.row for s in trained}
    }
    for spec in trained:
        assert spec.sections["train"] == budget.train and spec.sections["data"] == budget.data


def test_two_search_workers_share_one_storage_and_run_every_trial_once(place):
    """Two worker processes on one SQLite storage (as on several machines with one database
    URL): each model gets exactly its trials, every counted trial trained once (its epochs are
    recorded by the worker that ran it), none is left running or lost."""
    import optuna

    from deepm3.suite.pool import parallel
    from deepm3.suite.search import (
        COUNTED,
        Search,
        SearchJob,
        best_settings,
        create_studies,
        search_worker,
        study_name,
    )
    from deepm3.suite.search_storage import storage_url

    budget = _search_budget(place, epochs=1, trials=3)
    models = ("gru4rec", "sasrec")
    url = storage_url(place.layout, None)
    search = Search(budget, place.source, place.layout, Execution(jobs=2), url, models)
    create_studies(search)
    jobs = [SearchJob(search, worker) for worker in (0, 1)]
    assert parallel(search_worker, jobs, search.execution, lambda job: job.name) == [0, 1]
    workers = set()
    for model in models:
        study = optuna.load_study(study_name=study_name(search, model), storage=url)
        counted = [t for t in study.trials if t.state in COUNTED]
        assert len(counted) == budget.trials  # none lost
        trained = [t for t in study.trials if "epochs_run" in t.user_attrs]
        assert sorted(t.number for t in trained) == sorted(t.number for t in counted)  # once each
        assert all(t.user_attrs["epochs_run"] == 1 for t in counted)
        assert all(t.user_attrs["worker"] in (0, 1) for t in counted)
        workers |= {t.user_attrs["worker"] for t in counted}
        others = [t for t in study.trials if t.state not in COUNTED]
        assert all(t.state == optuna.trial.TrialState.FAIL for t in others)  # budget reached
        assert len({t.number for t in study.trials}) == len(study.trials)
    assert workers == {0, 1}  # both workers ran trials: they shared the storage
    best = best_settings(search)
    assert {m: best[m]["trials_counted"] for m in models} == {m: budget.trials for m in models}


@pytest.mark.parametrize(
    "url", ["foo://bar", "sqlite:////nonexistent/dir/x.db", "postgresql://u@127.0.0.1:1/db", "x"]
)
def test_a_storage_that_cannot_be_opened_is_one_config_error(url):
    from deepm3.errors import ConfigError
    from deepm3.suite.search_storage import open_storage

    with pytest.raises(ConfigError, match="cannot be opened"):
        open_storage(url)


def test_a_report_before_the_core_stage_ends_says_so_in_one_line(place):
    """The report stage on records that lack DeepM3's row (the core stage is still running)
    stops with one line naming the rows it found, not a traceback."""
    from deepm3.suite.budgets import AMAZON_DESIGNS, BUDGETS
    from deepm3.suite.report import write

    spec = _spec(epochs=1)
    job = place.job(spec)
    execute(job)
    publish([job.planned], place.layout)
    with pytest.raises(DeepM3Error, match=r"no finished deepm3 run \(rows: gru4rec\)"):
        write("t", None, BUDGETS["smoke"], AMAZON_DESIGNS["smoke"], place.layout)


def test_a_run_equal_to_another_rows_is_trained_once_and_copied(place):
    """Two rows that compute the same config (a twin that chose its twin's settings): the
    stage trains the first and gives the second a copy of its finished run, marked so, with
    the same results; both records are published. A run of another config trains as always."""
    from types import SimpleNamespace

    from deepm3.suite.stages import train_stage

    first = _spec(epochs=2)
    twin = dataclasses.replace(first, row="gru4rec-notime")
    other = dataclasses.replace(_spec(epochs=2, lr=0.01), row="gru4rec-other")
    planned = [place.job(s).planned for s in (first, twin, other)]
    assert planned[0].digest == planned[1].digest != planned[2].digest
    settings = SimpleNamespace(layout=place.layout, execution=Execution(jobs=1))
    summary = train_stage("core", planned, settings)
    assert summary["trained"] == 2 and summary["copied"] == 1
    marker = read_json(place.folder(twin) / "suite.json")
    assert marker["copied_from"] == first.name and marker["row"] == "gru4rec-notime"
    assert "copied_from" not in read_json(place.folder(other) / "suite.json")
    for name in ("metrics.json", "log.jsonl"):
        assert (place.folder(twin) / name).read_text() == (place.folder(first) / name).read_text()
    for spec in (first, twin, other):
        assert (place.layout.record_dir("core", spec.name) / "metrics.json").is_file()
    again = train_stage("core", planned, settings)  # everything done: nothing trains or copies
    assert again["trained"] == 0 and again["copied"] == 0
