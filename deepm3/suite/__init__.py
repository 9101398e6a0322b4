"""The experiment suite: one command from a raw data set to every table, plot and verdict.

A pipeline that reads in one direction (each module imports only those before it):

    budgets (training budget, analysis design) -> design (rows, run specs) -> layout (paths)
    -> pool (how jobs run) -> training (run identity, execute, publish) -> spaces, search
    (Optuna)
    -> measure (per-run measurements) -> claims (verdict rules) -> report (sections)
    -> stages (the stages in order; only the command line imports it)

Statistics come from :mod:`deepm3.stats`, run records, tables and plots from
:mod:`deepm3.reporting`.
"""

STAGES = ("search", "core", "lipschitz", "paper", "analyses", "report")  # in order
