"""The thin CLI: models listing, reports, argument errors."""

import json

from synthetic import write_synthetic_csv

from deepm3.cli import main
from deepm3.models import build_model, model_options
from deepm3.models.contract import count_parameters


def test_models_lists_every_model_with_its_parameter_count(capsys):
    assert main(["models", "--num-items", "100", "--max-len", "20"]) == 0
    out = capsys.readouterr().out
    for name in ("deepm3", "sasrec", "tisasrec", "gru4rec", "pop", "last_item"):
        assert name in out
    expected = count_parameters(build_model("sasrec", 100, model_options("sasrec", {}), 20))
    assert f"{expected['total']:,}" in out


def test_report_writes_a_table_and_a_plot_from_run_directories(tmp_path, capsys):
    csv = write_synthetic_csv(tmp_path / "events.csv", num_users=30, num_items=50)
    runs = []
    for model in ("pop", "last_item"):
        runs.append(tmp_path / model)
        assert main(["train", "--dataset", str(csv), "--model", model, "--out", str(runs[-1])]) == 0
    out = tmp_path / "report"
    assert main(["report", *map(str, runs), "--out", str(out), "--title", "T"]) == 0
    table = (out / "table.md").read_text()
    metrics = json.loads((runs[1] / "metrics.json").read_text())
    assert f"| last_item | {metrics['test']['ndcg@10']:.4f} |" in table
    assert (out / "comparison.png").stat().st_size > 1000
    assert (out / "runs" / "pop" / "provenance.json").is_file()


def test_bad_arguments_exit_with_two(capsys, tmp_path):
    assert main(["train", "--model", "pop"]) == 2
    assert "needs --dataset and --model" in capsys.readouterr().err
    csv = write_synthetic_csv(tmp_path / "events.csv", num_users=10)
    assert main(["train", "--dataset", str(csv), "--model", "pop", "window=3"]) == 2
    assert "pop takes no model options" in capsys.readouterr().err
    assert main(["train", "--dataset", str(csv), "--model", "bert4rec"]) == 2
    assert "valid: deepm3" in capsys.readouterr().err
