"""How far the search stage has come, per searched row, for ``deepm3 suite --plan``.

A days-long search is stopped and resumed; ``--plan`` shows, per row, the trials that count
(completed or pruned) against the budget, those running (or left running by a killed worker,
which the next start fails and retries), and the best validation NDCG@10 so far. It reads the
storage and never creates it: without a storage a row's ``best.json`` entry (a committed search
whose database was not kept) counts as done.
"""

from __future__ import annotations

from pathlib import Path

import optuna

from deepm3.suite.search import COUNTED, Search, read_best, study_name
from deepm3.suite.search_storage import open_storage

SQLITE = "sqlite:///"


def _storage_exists(url: str) -> bool:
    return not url.startswith(SQLITE) or Path(url[len(SQLITE) :]).is_file()


def search_lines(search: Search) -> list[str]:
    """One line per searched row: ``search  <row>  <trials and best>  <status>``, the status
    ``done`` (the budget's trials counted), ``in progress`` or ``to run``."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    budget = search.budget.trials
    best = read_best(search.layout) or {}
    storage = open_storage(search.url) if _storage_exists(search.url) else None
    names = set(optuna.get_all_study_names(storage)) if storage is not None else set()
    lines = []
    for row in search.rows:
        name = study_name(search, row)
        if name in names:
            trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
            counted = sum(t.state in COUNTED for t in trials)
            running = sum(t.state == optuna.trial.TrialState.RUNNING for t in trials)
            complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
            text = f"{counted}/{budget} trials" + (f", {running} running" if running else "")
            if complete:
                top = max(complete, key=lambda t: t.value)
                text += f", best valid NDCG@10 {top.value:.4f} (trial {top.number})"
            state = (
                "done" if counted >= budget else "in progress" if counted or running else "to run"
            )
        elif row in best:
            entry = best[row]
            text = (
                f"{entry['trials_counted']}/{budget} trials (best.json), best valid NDCG@10 "
                f"{entry['valid_ndcg@10']:.4f} (trial {entry['trial']})"
            )
            state = "done"
        else:
            text, state = f"0/{budget} trials", "to run"
        lines.append(f"{'search':<10} {row:<22} {text}  {state}")
    return lines
