"""Using a trained run: recommend for any user at a query time, export, serve over HTTP.

The names below load on first use (PEP 562), so that the CLI can import
:mod:`deepm3.recommend.commands` without importing torch."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Recommendation", "Recommender", "Request", "RequestError", "parse_request"]
_WHERE = {
    "Recommender": "deepm3.recommend.recommender",
    "Recommendation": "deepm3.recommend.requests",
    "Request": "deepm3.recommend.requests",
    "RequestError": "deepm3.recommend.requests",
    "parse_request": "deepm3.recommend.requests",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'deepm3.recommend' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
