"""Damaged run directories, checkpoints and CLI arguments: every command that reads a run ends
with exit code 2 and one line on stderr that names the damaged file (no traceback).

One tiny finished run is trained per module and copied per case; each case damages one file and
runs one command through :func:`deepm3.cli.main`. Hypothesis generates damaged bytes for
``config.json``, the checkpoints and ``log.jsonl``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from synthetic import SMALL_RUN as SMALL
from synthetic import write_synthetic_csv

from deepm3.cli import main
from deepm3.config import ADDED_LATER, TrainConfig, load_config
from deepm3.errors import DataError
from deepm3.train import loop
from deepm3.train.run import load_plan, run

COMMANDS = ("evaluate", "resume", "report", "recommend", "export")
PLANNED = ("evaluate", "resume", "recommend", "export")  # the commands that rebuild the model
WEIGHTS = ("evaluate", "resume", "recommend", "export")  # the commands that read best.pt
SERVED = ("recommend", "export")  # the commands that read serving.npz
HYPOTHESIS = settings(max_examples=25, deadline=None, database=None)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Finished one-epoch runs: deepm3 (the one damaged), sasrec and a wider deepm3."""
    folder = tmp_path_factory.mktemp("run_dirs")
    csv = write_synthetic_csv(folder / "events.csv", num_users=30)
    out = {"csv": csv}
    for label, name, extra in (
        ("deepm3", "deepm3", []),
        ("sasrec", "sasrec", []),
        ("wide", "deepm3", ["hidden_size=16"]),
    ):
        config = load_config(
            None, [*SMALL, "epochs=1", *extra], base={"data": {"dataset": str(csv)}}
        )
        run(name, config, folder / label)
        out[label] = folder / label
    return out


def copy_run(runs: dict[str, Path], scratch: Path, label: str = "deepm3") -> Path:
    target = scratch / "run"
    shutil.copytree(runs[label], target)
    return target


def command(name: str, run_dir: Path, scratch: Path) -> list[str]:
    """The CLI arguments of command ``name`` on ``run_dir`` (outputs go to ``scratch``)."""
    requests = scratch / "requests.jsonl"
    requests.touch()
    return {
        "evaluate": ["evaluate", str(run_dir)],
        "resume": ["train", "--resume", str(run_dir)],
        "report": ["report", str(run_dir), "--out", str(scratch / "report")],
        "recommend": [
            "recommend",
            str(run_dir),
            "--input",
            str(requests),
            "--output",
            str(scratch / "answers.jsonl"),
        ],  # fmt: skip
        "export": ["export", str(run_dir), "--out", str(scratch / "export")],
    }[name]


def cli(args: list[str]) -> tuple[int, str, str]:
    """``deepm3 args`` -> (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    return code, out.getvalue(), err.getvalue()


def fails(args: list[str], *named: str) -> str:
    """Run ``deepm3 args``; check the failure contract and that the message holds ``named``."""
    code, out, err = cli(args)
    assert code == 2, (out, err)
    assert "Traceback" not in err and "Traceback" not in out
    lines = err.splitlines()
    assert len(lines) == 1, err  # exactly one line, no warning beside it
    assert lines[0].startswith("deepm3: error: ")
    for text in named:
        assert text in lines[0], lines[0]
    return lines[0].removeprefix("deepm3: error: ")


def edit_json(change: Callable[[dict], object]) -> Callable[[bytes], bytes]:
    def damage(data: bytes) -> bytes:
        value = json.loads(data)
        change(value)
        return json.dumps(value).encode()

    return damage


# name -> (file, damage(bytes) -> bytes, commands that must refuse it, text in the message)
DAMAGES: dict[str, tuple[str, Callable[[bytes], bytes], tuple[str, ...], str]] = {
    "config-empty": ("config.json", lambda data: b"", COMMANDS, "empty"),
    "config-truncated": ("config.json", lambda data: data[:100], COMMANDS, "not valid JSON"),
    "config-array": ("config.json", lambda data: b"[1, 2]", COMMANDS, "expected a JSON object"),
    "config-no-model-name": (
        "config.json",
        edit_json(lambda c: c.pop("model_name")),
        COMMANDS,
        "'model_name'",
    ),
    "config-unknown-key": (
        "config.json",
        edit_json(lambda c: c["train"].update(an_old_setting=1)),
        PLANNED,
        "an_old_setting",
    ),
    "config-missing-key": (
        "config.json",
        edit_json(lambda c: c["train"].pop("epochs")),
        PLANNED,
        "missing key(s) train.epochs",
    ),
    "config-missing-option": (
        "config.json",
        edit_json(lambda c: c["model"].pop("hidden_size")),
        PLANNED,
        "model.hidden_size",
    ),
    "config-bad-value": (
        "config.json",
        edit_json(lambda c: c["model"].update(hidden_size="eight")),
        PLANNED,
        "hidden_size",
    ),
    "best-truncated": ("best.pt", lambda data: data[:1000], WEIGHTS, "not a readable checkpoint"),
    "best-garbage": ("best.pt", lambda data: b"PK\x03\x04junk", WEIGHTS, "not a readable"),
    "last-truncated": ("last.pt", lambda data: data[:1000], ("resume",), "not a readable"),
    "log-not-json": ("log.jsonl", lambda data: data + b"{oops\n", ("resume",), "line 2"),
    "log-no-epoch": ("log.jsonl", lambda data: b'{"loss": 1.0}\n' + data, ("resume",), "epoch"),
    "serving-garbage": ("serving.npz", lambda data: b"PK\x03\x04junk", SERVED, "damaged"),
    "serving-truncated": ("serving.npz", lambda data: data[: len(data) // 2], SERVED, "damaged"),
    "provenance-truncated": ("provenance.json", lambda data: data[:40], COMMANDS, "not valid"),
    "provenance-array": ("provenance.json", lambda data: b"[]", COMMANDS, "a JSON object"),
    "metrics-truncated": ("metrics.json", lambda data: data[:40], ("report",), "not valid JSON"),
    "metrics-incomplete": (
        "metrics.json",
        edit_json(lambda m: m["test"].pop("ndcg@10")),
        ("report",),
        "'test.ndcg@10'",
    ),
}
CASES = [(damage, name) for damage, spec in DAMAGES.items() for name in spec[2]]


@pytest.mark.parametrize(("damage", "name"), CASES, ids=[f"{d}-{n}" for d, n in CASES])
def test_a_damaged_run_file_is_one_error_naming_it(runs, tmp_path, damage, name):
    file, change, _, expected = DAMAGES[damage]
    run_dir = copy_run(runs, tmp_path)
    path = run_dir / file
    path.write_bytes(change(path.read_bytes()))
    fails(command(name, run_dir, tmp_path), str(path), expected)
    assert not (tmp_path / "report" / "runs").exists()  # report copies nothing from a bad run


@pytest.mark.parametrize(
    "damage", ["config-missing-key", "provenance-array", "best-truncated", "serving-garbage"]
)
def test_serve_refuses_a_damaged_run_before_it_listens(runs, tmp_path, monkeypatch, damage):
    from deepm3.recommend import server

    monkeypatch.setattr(server.uvicorn, "run", lambda *a, **k: pytest.fail("served a bad run"))
    file, change, _, expected = DAMAGES[damage]
    run_dir = copy_run(runs, tmp_path)
    path = run_dir / file
    path.write_bytes(change(path.read_bytes()))
    fails(["serve", str(run_dir), "--port", "0"], str(path), expected)


@pytest.mark.parametrize(
    ("source", "file", "name", "expected"),
    [
        ("sasrec", "best.pt", "evaluate", "holds a sasrec model, the run is deepm3"),
        ("sasrec", "best.pt", "recommend", "holds a sasrec model, the run is deepm3"),
        ("sasrec", "last.pt", "resume", "holds a sasrec model, the run is deepm3"),
        ("wide", "best.pt", "export", "parameter item_embedding.weight has shape"),
        ("wide", "last.pt", "resume", "the run's model expects"),
    ],
)
def test_a_checkpoint_of_another_model_is_refused_before_use(
    runs, tmp_path, source, file, name, expected
):
    run_dir = copy_run(runs, tmp_path)
    shutil.copy(runs[source] / file, run_dir / file)
    message = fails(command(name, run_dir, tmp_path), str(run_dir / file), expected)
    if source == "wide":
        assert message.endswith(", 8)") and ", 16)" in message  # both shapes named


def test_checkpoints_hold_the_model_name_and_older_ones_still_load(runs, tmp_path):
    run_dir = copy_run(runs, tmp_path)
    for file in ("best.pt", "last.pt"):
        payload = torch.load(run_dir / file, weights_only=True)
        assert payload["model_name"] == "deepm3"
        del payload["model_name"]  # as written before the name was stored
        torch.save(payload, run_dir / file)
    assert cli(command("evaluate", run_dir, tmp_path))[0] == 0
    assert cli(command("resume", run_dir, tmp_path))[0] == 0
    payload = torch.load(run_dir / "best.pt", weights_only=True)
    payload["model"] = torch.load(runs["sasrec"] / "best.pt", weights_only=True)["model"]
    torch.save(payload, run_dir / "best.pt")  # no name: the parameter names tell
    fails(command("evaluate", run_dir, tmp_path), "best.pt", "weights of another model")


def test_last_pt_without_optimizer_or_with_a_bad_state_is_refused(runs, tmp_path):
    run_dir = copy_run(runs, tmp_path)
    payload = torch.load(run_dir / "last.pt", weights_only=True)
    torch.save({k: v for k, v in payload.items() if k != "optimizer"}, run_dir / "last.pt")
    fails(command("resume", run_dir, tmp_path), "last.pt", "no 'optimizer'")
    payload["state"]["epoch"] = "one"
    torch.save(payload, run_dir / "last.pt")
    fails(command("resume", run_dir, tmp_path), "last.pt", "epoch='one'")


class RunsCode:
    """Unpickling this would call ``os.makedirs(marker)``: code run from a checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


def test_checkpoints_are_loaded_with_weights_only(runs, tmp_path, monkeypatch):
    run_dir = copy_run(runs, tmp_path)
    marker = tmp_path / "code-ran"
    torch.save({"model_name": "deepm3", "model": RunsCode(marker)}, run_dir / "best.pt")
    fails(command("evaluate", run_dir, tmp_path), "best.pt", "weights_only=True")
    assert not marker.exists()
    calls = []
    real_load = torch.load
    monkeypatch.setattr(
        torch, "load", lambda *a, **k: calls.append(k.get("weights_only")) or real_load(*a, **k)
    )
    shutil.copy(runs["deepm3"] / "best.pt", run_dir / "best.pt")
    assert cli(command("evaluate", run_dir, tmp_path))[0] == 0
    assert calls == [True]


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)


@st.composite
def damaged_config(draw: st.DrawFn, good: bytes) -> bytes:
    """Random bytes, a cut-off copy, another JSON value, or the config less one key."""
    kind = draw(st.sampled_from(["bytes", "cut", "value", "drop"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "cut":
        return good[: draw(st.integers(0, len(good.rstrip()) - 1))]
    if kind == "value":
        value = draw(JSON_VALUES.filter(lambda v: not (isinstance(v, dict) and "model_name" in v)))
        return json.dumps(value).encode()
    config = json.loads(good)
    section = draw(st.sampled_from(["data", "eval", "train", "model"]))
    keys = [k for k in sorted(config[section]) if f"{section}.{k}" not in ADDED_LATER]
    del config[section][draw(st.sampled_from(keys))]
    return json.dumps(config).encode()


def test_any_damaged_config_json_is_one_error_naming_it(runs, tmp_path_factory):
    good = (runs["deepm3"] / "config.json").read_bytes()

    @HYPOTHESIS
    @given(data=damaged_config(good), name=st.sampled_from(PLANNED))
    def check(data: bytes, name: str) -> None:
        scratch = Path(tempfile.mkdtemp(dir=tmp_path_factory.getbasetemp()))
        run_dir = copy_run(runs, scratch)
        (run_dir / "config.json").write_bytes(data)
        fails(command(name, run_dir, scratch), str(run_dir / "config.json"))

    check()


def test_any_damaged_checkpoint_is_one_error_naming_it(runs, tmp_path_factory):
    @HYPOTHESIS
    @given(
        file=st.sampled_from(["best.pt", "last.pt"]),
        cut=st.floats(0.0, 1.0, exclude_max=True),
        garbage=st.none() | st.binary(max_size=200),
    )
    def check(file: str, cut: float, garbage: bytes | None) -> None:
        scratch = Path(tempfile.mkdtemp(dir=tmp_path_factory.getbasetemp()))
        run_dir = copy_run(runs, scratch)
        path = run_dir / file
        good = path.read_bytes()
        path.write_bytes(good[: int(cut * len(good))] if garbage is None else garbage)
        name = "resume" if file == "last.pt" else "evaluate"
        fails(command(name, run_dir, scratch), str(path), "checkpoint")

    check()


def test_any_damaged_serving_file_is_one_error_naming_it(runs, tmp_path_factory):
    @HYPOTHESIS
    @given(
        cut=st.floats(0.0, 1.0, exclude_max=True),
        garbage=st.none() | st.binary(max_size=200),
    )
    def check(cut: float, garbage: bytes | None) -> None:
        scratch = Path(tempfile.mkdtemp(dir=tmp_path_factory.getbasetemp()))
        run_dir = copy_run(runs, scratch)
        path = run_dir / "serving.npz"
        good = path.read_bytes()
        path.write_bytes(good[: int(cut * len(good))] if garbage is None else garbage)
        fails(command("recommend", run_dir, scratch), f"{path}: damaged")

    check()


def _is_blank_or_a_log_record(line: bytes) -> bool:
    """What ``read_log`` accepts: a blank line, or an object with an integer epoch."""
    if not line.decode("utf-8", "replace").strip():
        return True
    with contextlib.suppress(ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        value = json.loads(line)
        return isinstance(value, dict) and type(value.get("epoch")) is int
    return False


LOG_LINES = st.binary(max_size=60) | st.text(max_size=60).map(
    lambda t: t.encode("utf-8", "surrogatepass")
)


def test_any_damaged_log_line_is_one_error_naming_it(runs, tmp_path_factory):
    lines = LOG_LINES.filter(lambda b: b"\n" not in b and not _is_blank_or_a_log_record(b))

    @HYPOTHESIS
    @given(line=lines, first=st.booleans())
    def check(line: bytes, first: bool) -> None:
        scratch = Path(tempfile.mkdtemp(dir=tmp_path_factory.getbasetemp()))
        run_dir = copy_run(runs, scratch)
        log = run_dir / "log.jsonl"
        good = log.read_bytes()
        log.write_bytes(line + b"\n" + good if first else good + line + b"\n")
        fails(command("resume", run_dir, scratch), str(log), f"line {1 if first else 2}")

    check()


def test_a_log_line_cut_off_by_a_crash_is_dropped_on_resume(runs, tmp_path):
    run_dir = copy_run(runs, tmp_path)
    log = run_dir / "log.jsonl"
    good = log.read_text()
    log.write_text(good + '{"epoch": 2, "lo')  # the process died while writing epoch 2's line
    assert cli(command("resume", run_dir, tmp_path))[0] == 0
    assert log.read_text() == good


def test_a_log_replaced_by_garbage_is_refused_on_resume(runs, tmp_path_factory):
    """Garbage without a line break is one unterminated last line: it was once dropped as a line
    cut off by a crash, and the run resumed with an empty log. last.pt holds epoch 1, so the
    log must hold its line: the error names the file (and the damaged line when there is one)."""

    def epoch_one(line: bytes) -> bool:
        with contextlib.suppress(ValueError, RecursionError):
            value = json.loads(line)
            return isinstance(value, dict) and value.get("epoch") == 1
        return False

    @HYPOTHESIS
    @given(garbage=LOG_LINES.filter(lambda b: b"\n" not in b and not epoch_one(b)))
    def check(garbage: bytes) -> None:
        scratch = Path(tempfile.mkdtemp(dir=tmp_path_factory.getbasetemp()))
        run_dir = copy_run(runs, scratch)
        log = run_dir / "log.jsonl"
        log.write_bytes(garbage)
        if _is_blank_or_a_log_record(garbage):  # read, but epoch 1 has no line
            fails(command("resume", run_dir, scratch), f"{log}: damaged, no line for epoch(s) 1")
        else:  # the line itself is damaged: named, however it is damaged
            fails(command("resume", run_dir, scratch), f"{log}, line 1: damaged")
        assert log.read_bytes() == garbage  # refused before anything is rewritten

    check()


def test_a_log_that_lost_an_epoch_is_refused_on_resume(runs, tmp_path):
    run_dir = copy_run(runs, tmp_path)
    log = run_dir / "log.jsonl"
    record = json.loads(log.read_text())
    log.write_text(json.dumps({**record, "epoch": 2}) + "\n")  # epoch 1's line replaced
    fails(command("resume", run_dir, tmp_path), f"{log}: damaged, no line for epoch(s) 1")


def test_a_log_that_is_gone_is_refused_on_resume(runs, tmp_path):
    run_dir = copy_run(runs, tmp_path)
    log = run_dir / "log.jsonl"
    log.unlink()
    fails(command("resume", run_dir, tmp_path), f"{log}: missing, but last.pt holds")
    assert not log.exists()  # refused before a new log is started


def test_resume_refuses_every_other_option_naming_them(runs, tmp_path):
    run_dir = copy_run(runs, tmp_path)
    args = ["train", "--resume", str(run_dir), "epochs=abc", "--model", "x", "--out", "y"]
    message = fails(args)
    assert message == (
        "--resume takes no other options or key=value settings: --model, --out, epochs=abc"
    )


@pytest.mark.parametrize(
    ("setting", "expected"),
    [("kcroe=10", "not kcroe; did you mean data.kcore?"), ("epochs=3", "epochs is a train")],
)
def test_data_prepare_accepts_data_settings_only(runs, setting, expected):
    fails(["data", "prepare", str(runs["csv"]), "kcore=2", setting], expected, "data keys:")


def test_an_output_path_that_is_a_file_or_folder_is_refused(runs, tmp_path):
    run_dir = copy_run(runs, tmp_path)
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    csv = str(runs["csv"])
    for args in (
        ["train", "--dataset", csv, "--model", "pop", "--out", str(a_file)],
        ["report", str(run_dir), "--out", str(a_file)],
        ["export", str(run_dir), "--out", str(a_file)],
        ["recommend", str(run_dir), "--output", str(tmp_path)],
        ["recommend", str(run_dir), "--output", str(a_file / "answers.jsonl")],
    ):
        fails(args, str(a_file) if "--out" in args else "--output")
    assert a_file.read_text() == "x"


def test_unreadable_run_files_are_one_error(runs, tmp_path, monkeypatch):
    run_dir = copy_run(runs, tmp_path)
    (run_dir / "best.pt").unlink()
    (run_dir / "best.pt").mkdir()  # a folder where the checkpoint should be
    fails(command("evaluate", run_dir, tmp_path), str(run_dir / "best.pt"), "is a folder")
    real_read = Path.read_bytes

    def denied(path: Path) -> bytes:
        if path.name == "config.json":
            raise PermissionError(13, "Permission denied", str(path))
        return real_read(path)

    monkeypatch.setattr(Path, "read_bytes", denied)  # tests run as root: chmod would not block
    for name in COMMANDS:
        fails(command(name, run_dir, tmp_path), "config.json", "cannot read (Permission denied)")
    monkeypatch.undo()

    def load_denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    shutil.rmtree(run_dir / "best.pt")
    shutil.copy(runs["deepm3"] / "best.pt", run_dir / "best.pt")
    monkeypatch.setattr(torch, "load", load_denied)
    fails(command("evaluate", run_dir, tmp_path), "best.pt", "cannot read (Permission denied)")


def test_report_on_unfinished_runs_and_damaged_records(runs, tmp_path):
    run_dir = copy_run(runs, tmp_path)
    (run_dir / "metrics.json").unlink()
    fails(command("report", run_dir, tmp_path), str(run_dir), "no metrics.json (not a finished")
    out = tmp_path / "report"
    assert cli(["report", str(runs["deepm3"]), "--out", str(out)])[0] == 0
    record = out / "runs" / "deepm3" / "provenance.json"
    record.write_text('{"device": "cpu"}')  # a committed record, damaged later
    fails(["report", "--out", str(out)], str(record), "'data.dataset'")


def _train_args(runs: dict[str, Path], out: Path, *settings: str) -> list[str]:
    csv = str(runs["csv"])
    return ["train", "--dataset", csv, "--model", "deepm3", "--out", str(out), *SMALL, *settings]


def test_a_run_that_fails_before_a_checkpoint_leaves_nothing(runs, tmp_path, monkeypatch):
    missing = ["train", "--dataset", str(tmp_path / "none.csv"), "--model", "pop"]
    fails([*missing, "--out", str(tmp_path / "new")], "none.csv", "not found")
    assert not (tmp_path / "new").exists()  # the folder this command created is gone

    def fails_at_once(*args, **kwargs):
        raise DataError("the data went away")

    monkeypatch.setattr(loop, "_run_epoch", fails_at_once)
    existing = tmp_path / "existing"
    (existing / "notes.txt").parent.mkdir()
    (existing / "notes.txt").write_text("mine")
    fails(_train_args(runs, existing, "epochs=2"), "the data went away")
    assert [p.name for p in existing.iterdir()] == ["notes.txt"]  # kept, but no run files


def test_a_run_that_fails_after_a_checkpoint_is_marked_and_resumable(runs, tmp_path, monkeypatch):
    real_epoch = loop._run_epoch

    def fails_in_epoch_two(*args, **kwargs):
        if args[5] == 2:  # (trainer, model, optimizer, table, config, epoch, ...)
            raise DataError("the disk went away")
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(loop, "_run_epoch", fails_in_epoch_two)
    out = tmp_path / "run"
    fails(_train_args(runs, out, "epochs=2"), "the disk went away")
    assert json.loads((out / "failed.json").read_text()) == {"error": "the disk went away"}
    fails(command("report", out, tmp_path), str(out), "the run failed: the disk went away")
    monkeypatch.setattr(loop, "_run_epoch", real_epoch)
    code, printed, _ = cli(["train", "--resume", str(out)])
    assert code == 0 and "which failed before: the disk went away" in printed
    assert not (out / "failed.json").exists() and (out / "metrics.json").is_file()


def test_report_says_so_when_every_target_is_tied(runs, tmp_path):
    """metrics.json has no untied NDCG@10 when no evaluated target is untied: the report shows
    that rather than refusing the run or printing NaN."""
    run_dir = copy_run(runs, tmp_path)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["test_untied"], metrics["protocol"]["untied_users"] = {}, 0
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    code, out, err = cli(["report", str(run_dir), "--out", str(tmp_path / "report")])
    assert code == 0, err
    table = (tmp_path / "report" / "table.md").read_text()
    assert "- (all tied)" in table and "nan" not in table.lower()


def test_a_config_without_a_setting_added_later_still_loads(runs, tmp_path):
    """Runs recorded before a setting existed lack it; its default is what they did."""
    run_dir = copy_run(runs, tmp_path)
    config = json.loads((run_dir / "config.json").read_text())
    for dotted in ADDED_LATER:
        section, key = dotted.split(".")
        del config[section][key]
    (run_dir / "config.json").write_text(json.dumps(config))
    code, _, err = cli(["evaluate", str(run_dir)])
    assert code == 0, err


def test_a_setting_added_later_reads_as_what_older_runs_did_not_todays_default(runs, tmp_path):
    """A run recorded before ``train.min_epochs`` existed let patience count from epoch 1; it
    must resume that way, not with today's 5-epoch warm-up."""
    assert TrainConfig().min_epochs != ADDED_LATER["train.min_epochs"]  # the case that matters
    run_dir = copy_run(runs, tmp_path)
    config = json.loads((run_dir / "config.json").read_text())
    del config["train"]["min_epochs"]
    (run_dir / "config.json").write_text(json.dumps(config))
    assert load_plan(run_dir).config.train.min_epochs == 0
