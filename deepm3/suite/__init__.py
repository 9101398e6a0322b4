"""The experiment suite: one command from a raw data set to every table, plot and verdict.

Stages (each resumable, each writing small committed files under the output folder):
search (:mod:`.search`), core seeds (:mod:`.runs`), then analyses of the trained runs
(:mod:`.analyses`: significance, irregularity, time sensitivity, robustness, solver and Lipschitz
ablations, efficiency) and the report (:mod:`.report`). Budgets live in :mod:`.budgets`, search
spaces in :mod:`.spaces`; :func:`deepm3.suite.runner.run_suite` runs them in order.
"""
