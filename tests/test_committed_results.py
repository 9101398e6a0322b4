"""The committed results stay what the code makes of them: every committed suite run counts as
done under today's code (its identity did not drift), and the committed reports re-render from
their records byte for byte (only the wall-time line, which counts this very render, differs).

The re-render reads only committed files; no data and no training."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from synthetic import REPO

from deepm3.cli import main
from deepm3.suite.budgets import SUITES
from deepm3.suite.layout import FIGURES, Layout
from deepm3.suite.pool import Execution
from deepm3.suite.report import write
from deepm3.suite.stages import SuiteSettings, plan_lines
from deepm3.suite.training import Source

COMMITTED = {  # (suite, data set or None for the suite's own, budget) -> results folder
    ("ml1m", None, "quick"): REPO / "results" / "ml1m",
    ("amazon", "amazon-beauty", "quick"): REPO / "results" / "amazon" / "amazon-beauty",
}
WALL_TIME = "Wall time per stage"


def _settings(key, out: Path, runs: Path) -> SuiteSettings:
    name, dataset, budget_name = key
    suite = SUITES[name]
    budget = suite.budget(budget_name, dataset)
    return SuiteSettings(
        suite,
        budget,
        suite.design(budget_name),
        Source(budget.dataset, None),
        Layout(runs=runs, out=out),
        Execution(),
    )


@pytest.mark.parametrize("key", list(COMMITTED), ids=lambda k: k[1] or k[0])
def test_every_committed_suite_run_counts_as_done(key, tmp_path):
    lines = plan_lines(_settings(key, COMMITTED[key], tmp_path / "runs"))
    assert lines and [line for line in lines if not line.endswith("done")] == []


def _rerender(key, tmp_path) -> tuple[Path, Path]:
    committed = COMMITTED[key]
    copy = tmp_path / "out"
    shutil.copytree(committed, copy)
    for figure in FIGURES:
        (copy / f"{figure}.png").unlink()
    settings = _settings(key, copy, tmp_path / "runs")
    write(
        settings.suite.title,
        settings.suite.headline,
        settings.budget,
        settings.design,
        settings.layout,
    )
    return committed, copy


def _same_report(committed: Path, copy: Path) -> None:
    def kept(path: Path) -> list[str]:
        return [line for line in path.read_text().splitlines() if not line.startswith(WALL_TIME)]

    assert kept(copy / "report.md") == kept(committed / "report.md")
    for figure in FIGURES:
        name = f"{figure}.png"
        assert (copy / name).read_bytes() == (committed / name).read_bytes(), name


def test_the_ml1m_report_rerenders_byte_for_byte(tmp_path):
    _same_report(*_rerender(("ml1m", None, "quick"), tmp_path))


@pytest.mark.slow
def test_the_amazon_report_rerenders_byte_for_byte(tmp_path):
    _same_report(*_rerender(("amazon", "amazon-beauty", "quick"), tmp_path))


@pytest.mark.parametrize("folder", ["ml-100k", "demo", "ml-100k/windows-last"])
def test_comparison_tables_rerender_byte_for_byte(folder, tmp_path):
    committed = REPO / "results" / folder
    copy = tmp_path / "out"
    shutil.copytree(committed / "runs", copy / "runs")
    title = (committed / "table.md").read_text().splitlines()[0].removeprefix("# ")
    assert main(["report", "--out", str(copy), "--title", title]) == 0
    assert (copy / "table.md").read_text() == (committed / "table.md").read_text()
    assert (copy / "comparison.png").read_bytes() == (committed / "comparison.png").read_bytes()


def test_committed_records_name_data_without_a_machine_path():
    """Run records and reports name the raw file inside the data folder (and its fingerprint),
    never an absolute path of the machine that ran them."""
    offenders = [
        str(path.relative_to(REPO))
        for path in (REPO / "results").rglob("*")
        if path.suffix in (".json", ".md")
        and any(
            marker in path.read_text()
            for marker in ('"source": "/', '"source": "..', "from `/", "from `..")
        )
    ]
    assert offenders == []
