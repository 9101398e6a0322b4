"""Irregular users: DeepM3's gains by groups of the coefficient of variation of history gaps."""

from __future__ import annotations

import pandas as pd

from deepm3.reporting import plots
from deepm3.reporting.text import ci, fmt, markdown, p_text, pct
from deepm3.stats import effects
from deepm3.suite.claims import IrregularFact
from deepm3.suite.design import FOCUS, NO_FLOW_TWIN, TRAINED_BASELINES
from deepm3.suite.layout import Layout

GROUPINGS = ((3, "tertiles (the paper's grouping)"), (5, "quintiles"))
CLAIM_GROUPS = 3  # the paper's claim is about the most irregular tertile


def _view(groups: pd.DataFrame, shown: list[str], compared: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "group": groups["group"],
            "users": groups["users"],
            "CV range": [
                f"{a:.2f}-{b:.2f}" for a, b in zip(groups["cv_min"], groups["cv_max"], strict=True)
            ],
            **{f"NDCG {r}": groups[f"ndcg:{r}"].map(fmt) for r in shown},
            **{
                f"gain vs {r}": [
                    f"{pct(g)} {ci(*c)} p={p_text(p)}"
                    for g, c, p in zip(
                        groups[f"gain:{r}"], groups[f"ci:{r}"], groups[f"p:{r}"], strict=True
                    )
                ]
                for r in compared
            },
        }
    )


def _claim_fact(groups: pd.DataFrame, ndcg: dict[str, pd.Series]) -> IrregularFact:
    """DeepM3 against the strongest trained baseline on the most irregular group."""
    trained = [r for r in TRAINED_BASELINES if r in ndcg]
    strongest = max(trained, key=lambda r: ndcg[r].mean())
    last = groups.iloc[-1]
    low, high = last[f"ci:{strongest}"]
    return IrregularFact(
        baseline=strongest,
        gain=last[f"gain:{strongest}"],
        low=low,
        high=high,
        p=last[f"p:{strongest}"],
        users=int(last["users"]),
    )


def irregularity(layout: Layout, ndcg: dict[str, pd.Series]) -> tuple[str, IrregularFact | None]:
    if not layout.user_cv.is_file() or FOCUS not in ndcg:
        return "", None
    cv = pd.read_csv(layout.user_cv).set_index("user")["cv"]
    compared = [r for r in (*TRAINED_BASELINES, NO_FLOW_TWIN, "last_item") if r in ndcg]
    shown = [FOCUS, *compared]
    parts = [
        "## 4. Irregular users (coefficient of variation of history gaps)\n\nCV of each test "
        f"user's gaps before the test event (history only); {int(cv.isna().sum())} users "
        "without a defined CV are left out. Gains are DeepM3's relative NDCG@10 difference "
        "[paired bootstrap 95% CI] and the Wilcoxon p (not corrected).\n"
    ]
    fact = None
    for count, title in GROUPINGS:
        groups = effects.irregularity_groups(cv, {r: ndcg[r] for r in shown}, FOCUS, count)
        parts.append(f"**{title}**\n\n" + markdown(_view(groups, shown, compared)) + "\n")
        if count == CLAIM_GROUPS:
            fact = _claim_fact(groups, ndcg)
        else:
            plots.irregularity_bars(groups, shown, layout.figure("irregularity"))
    parts.append("![irregularity](irregularity.png)\n")
    return "\n".join(parts), fact
