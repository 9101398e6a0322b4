"""Spies that see a behaviour however the code reaches it (imported by test modules)."""

from __future__ import annotations

import sys

import pytest

from deepm3.eval import evaluator


def record_evaluations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The role (``valid``/``test``) of every evaluation from now on, in order.

    Every loaded deepm3 module that holds the evaluator's ``evaluate`` (``from ... import
    evaluate``) gets the spy, the evaluator module included, so a call from any module counts,
    not only from the one a test expects it in.
    """
    roles: list[str] = []
    real = evaluator.evaluate

    def spy(scorer, data, role, *args, **kwargs):
        roles.append(role)
        return real(scorer, data, role, *args, **kwargs)

    for name, module in list(sys.modules.items()):
        if name.split(".")[0] == "deepm3" and getattr(module, "evaluate", None) is real:
            monkeypatch.setattr(module, "evaluate", spy)
    return roles
