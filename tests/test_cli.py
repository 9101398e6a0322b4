"""The thin CLI: models listing, reports, argument errors."""

import json
import shutil
import statistics

from synthetic import write_synthetic_csv

from deepm3.cli import main
from deepm3.models import build_model, model_options
from deepm3.models.contract import count_parameters


def test_models_lists_every_model_with_its_parameter_count(capsys):
    assert main(["models", "--num-items", "100", "--max-len", "20"]) == 0
    out = capsys.readouterr().out
    for name in ("deepm3", "sasrec", "tisasrec", "gru4rec", "timeattn", "pop", "last_item"):
        assert name in out
    expected = count_parameters(build_model("sasrec", 100, model_options("sasrec", {}), 20))
    assert f"{expected['total']:,}" in out


def test_report_commits_run_records_and_averages_seeds(tmp_path, capsys):
    csv = write_synthetic_csv(tmp_path / "events.csv", num_users=30, num_items=50)
    runs = [tmp_path / "pop"]
    assert main(["train", "--dataset", str(csv), "--model", "pop", "--out", str(runs[0])]) == 0
    for seed in (0, 1):
        runs.append(tmp_path / f"gru4rec-s{seed}")
        args = ["--out", str(runs[-1]), "epochs=1", "hidden_size=8", f"seed={seed}"]
        assert main(["train", "--dataset", str(csv), "--model", "gru4rec", *args]) == 0
    out = tmp_path / "report"
    assert main(["report", *map(str, runs), "--out", str(out), "--title", "T"]) == 0
    table = (out / "table.md").read_text()
    pop = json.loads((runs[0] / "metrics.json").read_text())
    assert f"| pop | {pop['test']['ndcg@10']:.4f} |" in table
    seeds = [json.loads((r / "metrics.json").read_text())["test"]["ndcg@10"] for r in runs[1:]]
    mean, std = statistics.mean(seeds), statistics.stdev(seeds)
    assert f"| gru4rec | {mean:.4f} ± {std:.4f} |" in table
    assert (out / "comparison.png").stat().st_size > 1000
    for name in ("config.json", "provenance.json", "metrics.json", "per_user_test.csv.gz"):
        assert (out / "runs" / "gru4rec-s1" / name).is_file()
    assert not (out / "runs" / "gru4rec-s1" / "best.pt").exists()  # never checkpoints
    # the report is rebuilt from the committed records alone
    for run in runs:
        shutil.rmtree(run)
    (out / "table.md").unlink()
    assert main(["report", "--out", str(out), "--title", "T"]) == 0
    assert (out / "table.md").read_text() == table


def test_bad_arguments_exit_with_two(capsys, tmp_path):
    assert main(["train", "--model", "pop"]) == 2
    assert "needs --dataset and --model" in capsys.readouterr().err
    csv = write_synthetic_csv(tmp_path / "events.csv", num_users=10)
    assert main(["train", "--dataset", str(csv), "--model", "pop", "window=3"]) == 2
    assert "pop takes no model options" in capsys.readouterr().err
    assert main(["train", "--dataset", str(csv), "--model", "bert4rec"]) == 2
    assert "valid: deepm3" in capsys.readouterr().err
