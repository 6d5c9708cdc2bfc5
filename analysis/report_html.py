"""``report.html``: the Markdown report as one self-contained page for a person — every figure inline (its SVG as
a data URI), tables styled, nothing fetched from anywhere."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from markdown_it import MarkdownIt

from cytocore.provenance import atomic_write_text

__all__ = ["render_html", "write_html"]

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1100px;margin:2rem auto;padding:0 1rem;
line-height:1.45;color:#222}
h1{font-size:1.6rem}h2{font-size:1.25rem;border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
h3{font-size:1.05rem}table{border-collapse:collapse;font-size:.82rem;margin:.6rem 0;display:block;overflow-x:auto}
th,td{border:1px solid #ddd;padding:.2rem .45rem;text-align:left;vertical-align:top}th{background:#f4f6f8}
tr:nth-child(even) td{background:#fafafa}code{background:#f4f4f4;padding:0 .2rem;border-radius:3px;font-size:.85em}
blockquote{border-left:4px solid #d55e00;background:#fff4ec;margin:1rem 0;padding:.4rem .9rem}
img{max-width:100%;height:auto;display:block;margin:.6rem 0}figure{margin:0}
"""


def _inline_images(body: str, root: Path) -> str:
    """Replace each ``<img src="figures/x.png">`` by the figure's SVG (or PNG) as a data URI."""
    def sub(m):
        src = m.group(2)
        p = (root / src)
        svg = p.with_suffix(".svg")
        if svg.is_file():
            uri = "data:image/svg+xml;base64," + base64.b64encode(svg.read_bytes()).decode()
        elif p.is_file():
            uri = "data:image/png;base64," + base64.b64encode(p.read_bytes()).decode()
        else:
            return f'<p><em>(figure {html.escape(src)} is missing)</em></p>'
        return f'{m.group(1)}"{uri}"{m.group(3)}'
    return re.sub(r'(<img src=)"([^"]+)"([^>]*>)', sub, body)


def render_html(markdown_text: str, root: Path, title: str = "Analysis report") -> str:
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    body = _inline_images(md.render(markdown_text), Path(root))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>\n{body}\n</body></html>\n")


def write_html(markdown_text: str, root: Path, path: Path) -> Path:
    return atomic_write_text(path, render_html(markdown_text, root))
