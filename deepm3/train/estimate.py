"""How long a run will take on this machine, measured before it starts (``deepm3 train
--estimate``).

The estimate times the loop's own epoch function on a few batches of the run's training table
(after warm-up batches, which allocate memory and run slower) and one validation pass, with the
run's threads and device, then extrapolates::

    setup + epochs x batches per epoch x seconds per batch + (validations + 2) x validation

(the final evaluation of ``best.pt`` ranks validation and test once each, as long as one
validation). It is an upper bound on the epochs (patience may stop the run sooner) and a
measurement of their speed on the machine as it is now: other work started later slows the run.
The model trained here is thrown away; the run itself starts from its seed as always.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from deepm3.config import RunConfig
from deepm3.data.prepare import prepare
from deepm3.data.sequences import training_table
from deepm3.eval.evaluator import evaluate
from deepm3.train.eta import duration, validations
from deepm3.train.loop import _run_epoch
from deepm3.train.losses import check_negatives, target_log_q
from deepm3.train.run import build_scorer, plan_run

FINAL_EVALUATIONS = 2  # best.pt on validation, then on test


@dataclass(frozen=True)
class RunEstimate:
    """Measured rates of one run and the time they add up to."""

    model: str
    epochs: int  # the run's epoch cap (0: a count baseline, nothing to train)
    batches: int  # training batches per epoch
    batch_seconds: float  # measured seconds per training batch
    validations: int  # validation passes during training
    validation_seconds: float  # measured seconds of one validation pass
    setup_seconds: float  # measured: data read (from the cache once prepared) and model built
    threads: int  # torch CPU threads the measurement ran with

    @property
    def seconds(self) -> float:
        training = self.epochs * self.batches * self.batch_seconds
        evaluation = (self.validations + FINAL_EVALUATIONS) * self.validation_seconds
        return self.setup_seconds + training + evaluation

    def line(self) -> str:
        """The estimate and its terms, ending in ``(N s)`` (scripts read the seconds there)."""
        return (
            f"{self.model}: {self.epochs} epochs x {self.batches} batches x "
            f"{self.batch_seconds:.3f} s + {self.validations + FINAL_EVALUATIONS} evaluations x "
            f"{self.validation_seconds:.1f} s + setup {self.setup_seconds:.1f} s "
            f"= about {duration(self.seconds)} on {self.threads} thread(s) "
            f"({self.seconds:.0f} s)"
        )


def estimate_run(name: str, config: RunConfig, batches: int = 8, warmup: int = 2) -> RunEstimate:
    """Time ``batches`` training batches (after ``warmup`` untimed ones) of random training rows
    and one validation pass of model ``name`` under ``config``; nothing is written."""
    plan = plan_run(name, config)
    train = plan.config.train
    if train.num_threads > 0:
        torch.set_num_threads(train.num_threads)
    started = time.perf_counter()
    data = prepare(plan.config.data)
    scorer, model = build_scorer(plan, data)
    setup = time.perf_counter() - started
    epochs = total_batches = 0
    batch_seconds = 0.0
    if model is not None:
        check_negatives(train.loss, train.loss_negatives, data.num_items)
        table = training_table(data, plan.config.data.train_windows, plan.config.data.window_stride)
        epochs, total_batches = train.epochs, math.ceil(len(table) / train.batch_size)
        rows = np.random.default_rng(train.seed).permutation(len(table))
        rows = rows[: (warmup + batches) * train.batch_size]
        item_log_q = None
        if train.loss == "inbatch_ce":
            counts = np.bincount(table.targets.ravel(), minlength=data.num_items + 1)
            item_log_q = target_log_q(counts).to(plan.device)
        quiet = dataclasses.replace(plan.config, train=dataclasses.replace(train, progress=False))
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=train.lr, weight_decay=train.weight_decay
        )
        # a table of few batches is timed whole, without a warm-up
        split = warmup * train.batch_size if len(rows) > warmup * train.batch_size else 0
        for part, timed in ((rows[:split], False), (rows[split:], True)):
            if len(part) == 0:
                continue
            clock = time.perf_counter()
            _run_epoch(model, model, optimizer, table.take(part), quiet, 1, plan.device, item_log_q)
            if timed:
                batch_seconds = (time.perf_counter() - clock) / math.ceil(
                    len(part) / train.batch_size
                )
        model.eval()
    clock = time.perf_counter()
    evaluate(scorer, data, "valid", plan.config.eval, plan.device)
    return RunEstimate(
        model=name,
        epochs=epochs,
        batches=total_batches,
        batch_seconds=batch_seconds,
        validations=validations(epochs, train.eval_every) if epochs else 0,
        validation_seconds=time.perf_counter() - clock,
        setup_seconds=setup,
        threads=torch.get_num_threads(),
    )
