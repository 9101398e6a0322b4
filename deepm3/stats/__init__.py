"""Pure statistics of evaluation results: no I/O, no models, no other DeepM3 module.

* :mod:`.significance`: per-user NDCG, paired tests, Holm correction, paired bootstrap.
* :mod:`.effects`: seed intervals, per-user means over seeds, relative changes with intervals,
  significance tables, irregularity groups, perturbation effects, solver summaries.
* :mod:`.irregularity`: coefficient of variation of gaps, quantile groups.
* :mod:`.perturb`: test-time perturbations of histories (pure array functions).
* :mod:`.perturbations`: the grid of perturbations a suite applies, built from its design.

Inputs are numpy arrays and pandas objects; outputs likewise. A test fails if any module here
imports another part of DeepM3.
"""
