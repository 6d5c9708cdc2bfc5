"""Markdown pieces the report sections share: tables and intervals."""

from __future__ import annotations

import pandas as pd

__all__ = ["fmt_iv", "md_table"]


def md_table(df: pd.DataFrame, floatfmt: str = ".3f") -> str:
    df = df.copy()
    for c in df.columns:
        if pd.api.types.is_float_dtype(df[c]):
            df[c] = df[c].map(lambda v: "" if pd.isna(v) else format(v, floatfmt))
    df = df.map(lambda v: "" if (not isinstance(v, str) and pd.isna(v)) else str(v))
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in df.to_numpy().tolist()]
    return "\n".join(lines)


def fmt_iv(v) -> str:
    return f"[{v[0]:.3f}, {v[1]:.3f}]"
