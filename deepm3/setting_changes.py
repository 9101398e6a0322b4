"""Settings that changed after runs were recorded with the settings of their day.

A run directory stores its fully resolved config, and the suites hash that form, so a committed
run must read back as the same run. Two kinds of change keep it so:

* :data:`ADDED_LATER`: a setting added after runs were recorded, with the value those runs used;
  a stored config that lacks one is complete and reads it as that value (:func:`fill_added_later`;
  any other missing key is damage). A ``model.`` setting belongs to the models whose options
  declare it, and is filled for those only. At that value a setting is also left out of a suite
  run's identity (:mod:`deepm3.suite.training`), so committed runs keep their hash.
* :data:`MOVED`: a setting that now lives elsewhere; a run directory, config file or command
  line that still names it is read as its new form (:func:`read_moved`).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from deepm3.settings import check_choice

# Each maps to the value that runs recorded without it used, filled in when a stored config lacks
# it (a default may change later: train.min_epochs is 5 today, and was 0 for every run recorded
# before it existed). eval.max_scores and train.loss_chunk bound memory (the batching of
# eval_batch_size alone); eval_users=0 scores every user; logq=false corrects none; min_epochs=0
# lets patience count from the first validation, as it always did; loss_sampling=uniform draws as
# every sampled loss did (its alpha acts with popularity only, and stays at its default).
# GRU4Rec's and DeepM3's hidden_dropout=0 and output_norm=none score the recurrent state as is.
# DeepM3's, timeattn's and TiSASRec's gap_encoding=none add no gap features to the item embedding.
# batching=random fed every batch whole at max_len columns, as every loop did.
ADDED_LATER: dict[str, Any] = {
    "eval.max_scores": 1 << 22,
    "eval.eval_users": 0,
    "eval.eval_users_seed": 0,
    "train.loss_chunk": 16384,
    "train.logq": False,
    "train.min_epochs": 0,
    "train.loss_sampling": "uniform",
    "train.loss_sampling_alpha": 0.5,
    "train.batching": "random",
    "model.hidden_dropout": 0.0,
    "model.output_norm": "none",
    "model.gap_encoding": "none",
}
# train.accelerate chose DeepM3's static loop beside model.implementation; model.implementation
# alone chooses the loop now (deepm3.models.loops.LOOPS), and accelerate=none left it as it was.
MOVED = {"train.accelerate": "model.implementation"}
ACCELERATE_MODES = ("none", "compile", "cuda_graph", "compiled_cuda_graph")  # train.accelerate


def read_moved(sections: dict[str, dict[str, Any]], where: str = "") -> dict[str, dict[str, Any]]:
    """``sections`` (one dict per section: data, eval, train, model) with each setting of
    :data:`MOVED` read as its new form, as a copy; ``where`` leads an error (``path: ``)."""
    sections = {name: dict(values) for name, values in sections.items()}
    if "accelerate" in sections["train"]:
        mode = sections["train"].pop("accelerate")
        check_choice(f"{where}train.accelerate", mode, ACCELERATE_MODES)
        if mode != "none":  # the loop the run trained with
            sections["model"]["implementation"] = mode
    return sections


def fill_added_later(
    sections: dict[str, dict[str, Any]], model_keys: Collection[str] = ()
) -> dict[str, dict[str, Any]]:
    """``sections`` with every setting of :data:`ADDED_LATER` they lack set to the value runs
    recorded without it used (today's default may differ), as a copy. ``model_keys``: the
    options of the run's model; a ``model.`` setting is filled only when it is one of them."""
    sections = {name: dict(values) for name, values in sections.items()}
    for dotted, value in ADDED_LATER.items():
        section, key = dotted.split(".")
        if section in sections and (section != "model" or key in model_keys):
            sections[section].setdefault(key, value)
    return sections
