"""The experiment suite: one command from a raw data set to every table, plot and verdict.

A pipeline that reads in one direction (each module imports only those before it):

    budgets (training budget, analysis design) -> design (rows, run specs) -> layout (paths)
    -> pool (how jobs run) -> runs (identity, execute, publish) -> search (Optuna)
    -> measure (per-run measurements) -> claims (verdict rules) -> report (sections)
    -> runner (the stages in order; only the command line imports it)

Statistics come from :mod:`deepm3.stats`, run records, tables and plots from
:mod:`deepm3.reporting`.
"""
