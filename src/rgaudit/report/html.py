"""Self-contained HTML pages from the Markdown reports (tables rendered, figures inlined)."""

from __future__ import annotations

import base64
import html
from pathlib import Path


def render_html(markdown_text: str, images: list[Path] | dict[str, bytes]) -> str:
    """A self-contained HTML page: the Markdown report rendered (tables included), plots inlined.

    Parameters
    ----------
    markdown_text : str
        The report as Markdown; image references ``![name](file.png)`` to the files in
        ``images`` are replaced by inline ``data:`` URIs, so the page needs no other file.
    images : list of Path, or dict of name -> PNG bytes
        The plots referenced by the Markdown (files, or their names and contents).
    """
    import markdown

    if not isinstance(images, dict):
        images = {p.name: p.read_bytes() for p in images}
    body = markdown.markdown(markdown_text, extensions=["tables"], output_format="html")
    for name, png in images.items():
        b64 = base64.b64encode(png).decode()
        body = body.replace(f'src="{html.escape(name)}"', f'src="data:image/png;base64,{b64}"')
    style = ("body{font-family:sans-serif;max-width:1100px;margin:auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:1em 0}"
             "th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}"
             "th:first-child,td:first-child{text-align:left}"
             "img{max-width:100%;display:block;margin:1em 0}")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>rgaudit audit</title>"
            f"<style>{style}</style></head><body>\n{body}\n</body></html>\n")
