"""A suite's settings for planning without data: the runs a budget would train, nothing read."""

from __future__ import annotations

from pathlib import Path

from deepm3.suite.budgets import SUITES
from deepm3.suite.layout import Layout
from deepm3.suite.pool import Execution
from deepm3.suite.stages import SuiteSettings
from deepm3.suite.training import Source


def planning_settings(suite: str, budget_name: str, folder: Path) -> SuiteSettings:
    """Suite ``suite`` at budget ``budget_name``, its data pointed at a folder that does not
    exist (planning reads none) and its runs and results under ``folder``."""
    chosen = SUITES[suite]
    budget = chosen.budget(budget_name)
    return SuiteSettings(
        chosen,
        budget,
        chosen.design(budget_name),
        Source(budget.dataset, str(folder / "no-data")),
        Layout(folder / "runs", folder / "out"),
        Execution(),
    )


def trained_in_search(search, monkeypatch) -> list[tuple[str, object]]:
    """Create ``search``'s studies and run one worker; (registry model, its resolved options)
    of every trial trained, in order."""
    from deepm3.models import model_options
    from deepm3.suite import search as search_module

    trained = []
    real_plan_run = search_module.plan_run

    def spy(model, config):
        trained.append((model, model_options(model, config.model)))
        return real_plan_run(model, config)

    monkeypatch.setattr(search_module, "plan_run", spy)
    search_module.create_studies(search)
    search_module.search_worker(search_module.SearchJob(search, 0))
    return trained
