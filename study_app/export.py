"""Tidy long-format export: one row per response, joined with the stimulus manifest and the model's outputs, in
exactly the columns of ``docs/tidy-responses.md`` (``cytocore.schema``), validated before it is written."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from sqlalchemy import select

from .storage import Assignment, Participant, Response


def export_responses(service, include_practice: bool = True, validate: bool = True) -> pd.DataFrame:
    """The tidy response table of ``service``'s study (empty DataFrame with the right columns if no responses)."""
    from cytocore.schema import MODEL_PROB_PREFIX, REQUIRED_COLUMNS, validate_responses

    cfg, study = service.cfg, service.study

    def go(s):
        q = (select(Participant.id, Participant.role, Participant.years_experience, Assignment.trial_index,
                    Assignment.block, Assignment.phase, Assignment.is_attention_check, Assignment.stimulus_id,
                    Response.auth_response, Response.auth_confidence, Response.auth_confidence_level,
                    Response.class_response, Response.class_confidence, Response.class_confidence_level,
                    Response.confidence_levels, Response.auth_rt_ms, Response.class_rt_ms, Response.responded_at)
             .join(Assignment, Assignment.id == Response.assignment_id)
             .join(Participant, Participant.id == Assignment.participant_id)
             .where(Participant.study_id == cfg.id)
             .order_by(Participant.number, Assignment.seq))
        return s.execute(q).all()

    rows = service.db.read(go)
    cols = ["participant_id", "participant_role", "years_experience", "trial_index", "block", "phase",
            "is_attention_check", "stimulus_id", "auth_response", "auth_confidence", "auth_confidence_level",
            "class_response", "class_confidence", "class_confidence_level", "confidence_levels", "auth_rt_ms",
            "class_rt_ms", "responded_at"]
    df = pd.DataFrame([tuple(r) for r in rows], columns=cols)
    if not include_practice:
        df = df[df["phase"] == "main"]
    m = study.manifest.reset_index(drop=True)
    prob_cols = [f"{MODEL_PROB_PREFIX}{c}" for c in study.classes]
    keep = ["stimulus_id", "source", "morph_strength", "true_class", "model_pred_class", "model_confidence",
            "model_margin", "model_anomaly"] + prob_cols
    df = df.merge(m[keep], on="stimulus_id", how="left", validate="many_to_one")
    df.insert(0, "study_id", cfg.id)
    df["responded_at"] = pd.to_datetime(df["responded_at"], utc=True)
    for c in ("years_experience", "auth_confidence", "class_confidence", "auth_rt_ms", "class_rt_ms",
              "morph_strength", "model_confidence", "model_margin", "model_anomaly", *prob_cols):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    for c in ("trial_index", "block", "auth_confidence_level", "class_confidence_level", "confidence_levels"):
        df[c] = df[c].astype("int64")
    df["is_attention_check"] = df["is_attention_check"].astype(bool)
    df["model_pred_class"] = df["model_pred_class"].astype(object).where(df["model_pred_class"].notna(), None)
    df = df[list(REQUIRED_COLUMNS) + prob_cols].reset_index(drop=True)
    if validate and len(df) and (df["phase"] == "main").any():
        from cytocore.schema import ResponseDataError
        try:
            validate_responses(df, classes=study.classes, min_attention_accuracy=None)
        except ResponseDataError as exc:  # content (e.g. one rater who always said "real") is not a schema error
            if "after the stated exclusions" not in str(exc):
                raise
    return df


def write_export(df: pd.DataFrame, out: str | Path) -> list[Path]:
    """Write ``df`` as CSV and Parquet. ``out`` is a folder (responses.csv + responses.parquet) or a file name
    ending in .csv / .parquet (the other format is written beside it)."""
    out = Path(out)
    if out.suffix.lower() in (".csv", ".parquet"):
        base = out.with_suffix("")
    else:
        out.mkdir(parents=True, exist_ok=True)
        base = out / "responses"
    base.parent.mkdir(parents=True, exist_ok=True)
    csv, pq = base.with_suffix(".csv"), base.with_suffix(".parquet")
    df.to_csv(csv, index=False)
    df.to_parquet(pq, index=False)
    return [csv, pq]
