"""A model card (Mitchell et al., FAT* 2019) generated from an evaluation table, as Markdown.

The people who decide whether a segmentation model may be used need, on one page: what it is for
(and not for), what data it was tested on, how well it does overall *and per site and subgroup* with
confidence intervals, how often quality control flagged a case and whether flagged cases really were
worse, and where it fails. Writing that page by hand invites copying numbers from an old run;
``model_card_markdown`` computes every number from the evaluation table it is given.

The table has one row per evaluated case: a metric column (default ``dice``), optionally a site
column, subgroup columns (age band, sex, grade, ...), a case id column, and the ``flags`` column of
:func:`medseg_edu.qc.qc_flags` (comma-separated flag names, "" for a clean case).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from medseg_edu.bootstrap import bootstrap_ci, subgroup_table
from medseg_edu.qc import qc_summary

__all__ = ["markdown_table", "group_metrics", "model_card_markdown"]


def markdown_table(df: pd.DataFrame, *, digits: int = 3) -> str:
    """A DataFrame as a GitHub-flavoured Markdown table (floats rounded to ``digits``; no index).

    Shape: a table of R rows and C columns -> a string of R + 2 lines.

    Example:
        >>> print(markdown_table(pd.DataFrame({"site": ["A"], "dice": [0.81234]})))
        | site | dice |
        | --- | --- |
        | A | 0.812 |

    Taught in week 9.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"df must be a pandas DataFrame, got {type(df).__name__}")

    def cell(value: Any) -> str:
        if isinstance(value, (float, np.floating)):
            return "n/a" if np.isnan(value) else f"{value:.{digits}f}"
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(str(c) for c in df.columns) + " |", "| " + " | ".join("---" for _ in df.columns) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def _check_table(table: Any, columns: Sequence[str]) -> pd.DataFrame:
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"table must be a pandas DataFrame (one row per case), got {type(table).__name__}")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"table has no column(s) {missing}; columns are {list(table.columns)}")
    return table


def group_metrics(table: pd.DataFrame, *, by: str, metric: str = "dice", n_resamples: int = 2000,
                  confidence: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Mean ``metric`` per group of ``by`` with a percentile-bootstrap CI (cases with NaN left out).

    A thin layer over :func:`medseg_edu.bootstrap.subgroup_table` that first drops the cases whose
    metric is undefined (NaN, e.g. Dice of an empty prediction on an empty target) and counts them in
    a column ``n_undefined``.

    Shape: table (N rows) -> one row per group: ``by``, n, mean, ci_low, ci_high, n_undefined.

    Taught in week 9.
    """
    table = _check_table(table, [by, metric])
    values = pd.to_numeric(table[metric], errors="coerce")
    defined = table[values.notna()].assign(**{metric: values[values.notna()]})
    if defined.empty:
        raise ValueError(f"table[{metric!r}] has no defined (non-NaN) value")
    result = subgroup_table(defined, value=metric, by=by, n_resamples=n_resamples, confidence=confidence, seed=seed)
    undefined = table[values.isna()].groupby(by, dropna=False).size()
    result["n_undefined"] = [int(undefined.get(g, 0)) for g in result[by]]
    return result


def model_card_markdown(table: pd.DataFrame, *, model_name: str, intended_use: str, data_description: str,
               metric: str = "dice", site_column: Optional[str] = "site", subgroup_columns: Sequence[str] = (),
               case_column: Optional[str] = "case_id", flag_column: Optional[str] = "flags",
               failure_below: float = 0.5, limitations: Sequence[str] = (), n_resamples: int = 2000,
               confidence: float = 0.95, seed: int = 0) -> str:
    """A model card in Markdown, every number computed from ``table``.

    Sections: ``# Model card: <name>``, ``## Intended use``, ``## Data`` (cases per site),
    ``## Performance`` (overall mean with a bootstrap CI, then ``### By site`` and ``### By <column>``
    tables with CIs), ``## Quality control`` (cases per flag and the mean metric of flagged vs clean
    cases), ``## Known failure modes`` (cases below ``failure_below``, groups whose whole CI lies
    below the overall mean, flags whose cases score lower), ``## Limitations``.
    Columns set to None (site, case, flags) leave their parts out.

    Shape: table, one row per evaluated case -> a Markdown string.

    Taught in week 9.
    """
    columns = [metric] + [c for c in (site_column, case_column, flag_column) if c is not None] + list(subgroup_columns)
    table = _check_table(table, columns)
    texts = {"model_name": model_name, "intended_use": intended_use, "data_description": data_description}
    for name, text in texts.items():
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{name} must be a non-empty string, got {text!r}")
    values = pd.to_numeric(table[metric], errors="coerce")
    defined = values.dropna().to_numpy(dtype=np.float64)
    if defined.size == 0:
        raise ValueError(f"table[{metric!r}] has no defined (non-NaN) value")
    options = dict(metric=metric, n_resamples=n_resamples, confidence=confidence, seed=seed)
    level = f"{confidence:.0%}"
    mean, low, high = bootstrap_ci(defined, n_resamples=n_resamples, confidence=confidence, seed=seed)
    lines = [f"# Model card: {model_name}", "", "## Intended use", "", intended_use.strip(), "",
             "## Data", "", data_description.strip(), "",
             f"Evaluated on {len(table)} cases"
             + (f" from {table[site_column].nunique()} sites." if site_column else ".")]
    if site_column:
        counts = table.groupby(site_column, dropna=False).size().reset_index(name="cases")
        lines += ["", markdown_table(counts)]
    lines += ["", "## Performance", "",
              f"Mean {metric}: **{mean:.3f}** ({level} CI {low:.3f} to {high:.3f}, percentile bootstrap over "
              f"{defined.size} cases; cases with an undefined {metric} left out: {int(values.isna().sum())})."]
    groups = ([site_column] if site_column else []) + list(subgroup_columns)
    below_overall = []
    for column in groups:
        result = group_metrics(table, by=column, **options)
        title = "site" if column == site_column else column
        lines += ["", f"### By {title}", "", markdown_table(result)]
        below_overall += [f"{title} = {g} (mean {m:.3f}, CI {lo:.3f} to {hi:.3f})"
                          for g, m, lo, hi in zip(result[column], result["mean"], result["ci_low"], result["ci_high"])
                          if hi < mean]
    flag_lines, worse_flags = [], []
    if flag_column:
        flags = table[flag_column].fillna("").astype(str)
        summary = qc_summary(table, metric=metric, flag_column=flag_column)
        rows = summary.rename(columns={"mean_flagged": f"mean {metric} flagged", "mean_clean": f"mean {metric} clean"})
        worse_flags = [f"{flag} (cases: {n}, mean {metric} {m:.3f} vs {c:.3f} for unflagged cases)"
                       for flag, n, m, c in summary.itertuples(index=False) if m < c]  # NaN compares False
        n_flagged = int((flags.str.strip() != "").sum())
        flag_lines = ["", "## Quality control", "",
                      f"{n_flagged} of {len(table)} cases raised at least one quality-control flag."]
        if len(rows):
            flag_lines += ["", markdown_table(rows)]
    lines += flag_lines
    failing = table[values < failure_below]
    lines += ["", "## Known failure modes", "",
              f"- Cases with {metric} below {failure_below:g}: {len(failing)} of {len(table)}"
              + (": " + ", ".join(str(c) for c in failing[case_column]) if case_column and len(failing) else "") + "."]
    lines += [f"- Whole {level} CI below the overall mean: {text}." for text in below_overall]
    lines += [f"- Flag associated with lower {metric}: {text}." for text in worse_flags]
    lines += ["", "## Limitations", ""]
    lines += [f"- {text}" for text in limitations]
    lines += ["- Intervals resample cases: with few cases per group they are wide.",
              f"- Untested: any {', '.join(groups) or 'site or subgroup'} value that is not in the tables above."]
    return "\n".join(lines) + "\n"
