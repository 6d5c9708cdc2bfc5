"""The interactive map: one self-contained HTML file (plotly.js embedded, the cells' thumbnails inline), so it opens
offline and can be mailed. Hovering a point shows the cell, its label, subtype and cluster; buttons switch the
representation."""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from PIL import Image

from cytocore.provenance import atomic_write_text

from ..data import DataError, load_image
from .figures import colour_of

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1em 2em; color: #222; }}
#wrap {{ display: flex; gap: 1.5em; align-items: flex-start; }}
#map {{ flex: 1 1 auto; min-width: 600px; height: 720px; }}
#cell {{ width: 260px; flex: 0 0 260px; position: sticky; top: 1em; font-size: 0.9em; }}
#cell img {{ width: 192px; height: 192px; image-rendering: auto; border: 1px solid #ccc; background: #fafafa; }}
#cell dt {{ font-weight: 600; margin-top: 0.4em; }} #cell dd {{ margin: 0; word-break: break-all; }}
table {{ border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 2px 8px; text-align: right; }} th {{ background: #f4f4f4; }}
td:first-child, td:nth-child(2) {{ text-align: left; }}
.note {{ color: #555; max-width: 70em; }}
</style></head><body>
<h1>{title}</h1>
<p class="note">{intro}</p>
<div id="wrap">{plot}
<div id="cell"><img id="cell-img" alt="hover a cell" src=""><dl>
<dt>cell</dt><dd id="cell-path">hover a point</dd><dt>label</dt><dd id="cell-label"></dd>
<dt>subtype</dt><dd id="cell-subtype"></dd><dt>cluster</dt><dd id="cell-cluster"></dd></dl></div></div>
<h2>Do clusters inside a class recover the subtypes?</h2>
<p class="note">{check_note}</p>
{check}
<h2>Stable candidates</h2>
<p class="note">{cand_note}</p>
{candidates}
<h2>Provenance</h2>
<pre>{provenance}</pre>
<script>
const CELLS = {cells};
const REPS = {reps};
function current() {{
  const d = document.getElementById('map').data;
  const v = d.findIndex(t => t.visible === true || t.visible === undefined);
  return v < 0 ? REPS[0] : d[v].meta;
}}
function show(i) {{
  const c = CELLS[i]; if (!c) return;
  document.getElementById('cell-img').src = c.thumb ? 'data:image/jpeg;base64,' + c.thumb : '';
  document.getElementById('cell-path').textContent = c.path;
  document.getElementById('cell-label').textContent = c.label;
  document.getElementById('cell-subtype').textContent = c.subtype;
  document.getElementById('cell-cluster').textContent = (c.cluster || {{}})[current()] || '';
}}
window.addEventListener('load', () =>
  document.getElementById('map').on('plotly_hover', ev => show(ev.points[0].customdata)));
</script>
</body></html>
"""


def thumbnail(path: str | Path, size: int = 64) -> str:
    """A small JPEG of the cell's original image, base64 (empty when the file no longer reads)."""
    try:
        img = load_image(path)
    except (OSError, DataError):
        return ""
    img.thumbnail((size, size), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=82)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def write_map_html(path: Path, coords: dict[str, np.ndarray], cells: pd.DataFrame, clusters: dict[str, np.ndarray],
                   check: pd.DataFrame, candidates: pd.DataFrame, provenance: dict, title: str,
                   added: pd.DataFrame | None = None, added_coords: dict[str, np.ndarray] | None = None,
                   thumb_px: int = 64, intro: str = "") -> Path:
    """Write the page. ``cells`` (path, label, subtype) and ``clusters[rep]`` (a label per cell, e.g.
    "neutrophil c2") give the hover; ``added`` (path, nearest_class) cells are drawn as black crosses."""
    import plotly.graph_objects as go  # plotly: only the map's HTML needs it
    import plotly.io as pio

    reps = list(coords)
    classes = list(dict.fromkeys(cells["label"]))
    col = colour_of(classes)
    records = [{"path": str(r.path), "label": str(r.label), "subtype": str(r.subtype_raw or ""),
                "cluster": {rep: str(clusters[rep][i]) for rep in reps if rep in clusters},
                "thumb": thumbnail(r.path, thumb_px)} for i, r in enumerate(cells.itertuples(index=False))]
    n = len(records)
    if added is not None and len(added):
        records += [{"path": str(r.path), "label": f"added (nearest class: {r.nearest_class})", "subtype": "",
                     "cluster": {}, "thumb": thumbnail(r.path, thumb_px)} for r in added.itertuples(index=False)]
    fig = go.Figure()
    per_rep = []
    labels = cells["label"].to_numpy()
    for r_i, rep in enumerate(reps):
        start = len(fig.data)
        for c in classes:
            idx = np.flatnonzero(labels == c)
            fig.add_trace(go.Scatter(
                x=coords[rep][idx, 0], y=coords[rep][idx, 1], mode="markers", name=c, meta=rep,
                legendgroup=c, visible=r_i == 0, customdata=idx,
                marker={"size": 6, "color": col[c], "opacity": 0.85},
                text=[f"{records[i]['label']} · {records[i]['subtype']} · {records[i]['cluster'].get(rep, '')}"
                      f"<br>{records[i]['path']}" for i in idx],
                hovertemplate="%{text}<extra></extra>"))
        if added_coords and rep in added_coords and len(added_coords[rep]):
            idx = np.arange(n, n + len(added_coords[rep]))
            fig.add_trace(go.Scatter(
                x=added_coords[rep][:, 0], y=added_coords[rep][:, 1], mode="markers", name="added", meta=rep,
                legendgroup="added", visible=r_i == 0, customdata=idx,
                marker={"size": 10, "color": "black", "symbol": "x"},
                text=[f"{records[i]['label']}<br>{records[i]['path']}" for i in idx],
                hovertemplate="%{text}<extra></extra>"))
        per_rep.append((start, len(fig.data)))
    buttons = [{"label": rep, "method": "update",
                "args": [{"visible": [a <= k < b for k in range(len(fig.data))]}, {"title": f"representation: {rep}"}]}
               for rep, (a, b) in zip(reps, per_rep)]
    fig.update_layout(title=f"representation: {reps[0]}", template="plotly_white", hovermode="closest",
                      margin={"l": 20, "r": 20, "t": 80, "b": 20}, legend={"itemsizing": "constant"},
                      updatemenus=[{"type": "buttons", "direction": "right", "x": 0, "y": 1.1, "xanchor": "left",
                                    "buttons": buttons}],
                      xaxis={"showticklabels": False, "title": "UMAP 1"}, yaxis={"showticklabels": False,
                                                                                 "title": "UMAP 2"})
    plot = pio.to_html(fig, include_plotlyjs=True, full_html=False, div_id="map", config={"responsive": True})
    page = PAGE.format(
        title=html.escape(title), intro=intro, plot=plot,
        check_note=("Adjusted mutual information (AMI) between HDBSCAN clusters inside the class and the subtypes "
                    "(0 = chance, 1 = the same partition; mean and sd over the subsample reruns), the same for "
                    "k-means told the number of subtypes, and a k-NN subtype probe (stratified cross-validation, "
                    "balanced accuracy; chance = 1/number of subtypes; p from label permutations). "
                    "n = cells with a subtype. The rows '(trained classes)': the same probe for the trained "
                    "classes over all cells — how well the representation separates what was trained."),
        check=_table(_pivot(check)),
        cand_note=("Clusters inside a class, with their stability: the mean Jaccard similarity with the best "
                   "matching cluster of each rerun on a subsample with another seed (≥ the threshold: a stable "
                   "candidate, with a contact sheet of its most typical cells in candidates/)."),
        candidates=_table(candidates.drop(columns=[c for c in ("typical_cells", "sheet") if c in candidates])),
        provenance=html.escape(json.dumps(provenance, indent=1, default=str)),
        cells=json.dumps(records, separators=(",", ":")).replace("</", "<\\/"), reps=json.dumps(reps))
    return atomic_write_text(path, page)


def _pivot(check: pd.DataFrame) -> pd.DataFrame:
    if check.empty:
        return check
    wide = check.pivot_table(index=["class", "representation"], columns="metric", values="value", sort=False)
    n = check.groupby(["class", "representation"], sort=False)["n"].max()
    wide.insert(0, "n", n)
    order = [c for c in ("n", "ami_hdbscan", "ami_hdbscan_mean", "ami_hdbscan_sd", "n_clusters", "noise_fraction",
                         "ami_kmeans", "knn_balanced_accuracy", "knn_chance", "knn_p_value") if c in wide]
    wide = wide[order].reset_index()
    for c in ("n", "n_clusters"):
        if c in wide:
            wide[c] = wide[c].round().astype("Int64")
    return wide


def _table(df: pd.DataFrame, digits: int = 3) -> str:
    if df is None or df.empty:
        return "<p><em>none</em></p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = []
    for r in df.itertuples(index=False):
        cells = [_fmt(v, digits) for v in r]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def summary_rows(check: pd.DataFrame) -> Sequence[str]:
    """The check as Markdown table rows (for summary.md)."""
    wide = _pivot(check)
    if wide.empty:
        return ["(no class with at least two subtypes: no check)"]
    cols = list(wide.columns)
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in wide.itertuples(index=False):
        out.append("| " + " | ".join(_fmt(v) for v in r) + " |")
    return out


def _fmt(v, digits: int = 3) -> str:
    """A table cell: floats to ``digits``, missing values empty."""
    if v is None or v is pd.NA or (isinstance(v, (float, np.floating)) and np.isnan(v)):
        return ""
    if isinstance(v, (float, np.floating)):
        return f"{v:.{digits}f}"
    return html.escape(str(v))
