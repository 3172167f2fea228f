"""A self-contained report page for an output directory: ``report.html``, generated from the files
the directory holds, so new outputs appear on it without code changes.

The page shows, in order: links to every file (and sub-directory) beside it; every ``*.txt`` and
``*.md`` as preformatted text (``summary.txt``, the statistics the script printed with their
caveats, first); every image (``*.png``, ``*.gif``, ``*.svg``, ``*.jpg``) embedded as a ``data:``
URI; every ``*.json`` as tables of its top-level sections (config, versions, timing, ...; sections
too large for a page are named and linked); every ``*.csv`` as a table sortable by clicking its
header (the first :data:`MAX_ROWS` rows; the whole file is linked). It loads nothing from
outside (a Content-Security-Policy forbids it), so it opens offline and can be mailed as one file.
Every file name and value is escaped. Hidden files (``.``-prefixed: locks, temporary files) are
left out.

``report.html?selftest=TABLE_ID,COLUMN;...`` makes the page click each named column's header twice
and write what it saw (the column ascending, then descending; every image's ``naturalWidth``;
uncaught errors) as JSON into ``<pre id="selftest">``: the browser test reads it from the DOM.
Sorting is numeric where both cells are numbers (``inf``/``-inf`` included), numbers before text,
empty cells last in either direction.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import os
from pathlib import Path
from urllib.parse import quote

from jaxopt_cmp.io import atomic_write_bytes

REPORT_NAME = "report.html"
MAX_ROWS = 200  # rows of a CSV (or of a JSON section) shown on the page; the file has them all
MAX_CELL = 2_000  # characters of one JSON value shown
MAX_TEXT = 200_000  # characters of a text file shown
MAX_EMBED = 50 * 2**20  # bytes of an image embedded; larger ones are linked only
IMAGES = {".png": "image/png", ".gif": "image/gif", ".svg": "image/svg+xml", ".jpg": "image/jpeg"}
TEXTS = (".txt", ".md")
# Opens offline, whatever a file holds: nothing may load from outside the page itself.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"

STYLE = """
body{font-family:sans-serif;margin:1.5em auto;max-width:75em;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;margin-top:1.8em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.2em .5em;text-align:left;vertical-align:top}
th.sortable{cursor:pointer;background:#f2f2f2}th.sortable:after{content:" \\2195";color:#999}
pre{background:#f7f7f7;padding:.8em;overflow-x:auto;font-size:.85em}
figure{margin:1em 0}img{max-width:100%;border:1px solid #eee}.note{color:#666;font-size:.9em}
"""

# First in <head>: records uncaught errors, so a page that breaks says so in its own DOM.
ERRORS_JS = "window.__errors=[];window.addEventListener('error',function(e){window.__errors.push(String(e.message))});"

SORT_JS = """
function cellKey(s){var t=s.trim().toLowerCase();if(t==='')return null;
 if(t==='inf'||t==='+inf'||t==='infinity')return Infinity;if(t==='-inf'||t==='-infinity')return -Infinity;
 var n=Number(t);return isNaN(n)?s.trim():n;}
function compareKeys(a,b){if(a===b)return 0;if(a===null)return 1;if(b===null)return -1;
 var na=typeof a==='number',nb=typeof b==='number';if(na&&nb)return a<b?-1:1;if(na)return -1;if(nb)return 1;
 return a<b?-1:1;}
function sortTable(table,col){var th=table.tHead.rows[0].cells[col];var dir=th.dataset.dir==='asc'?'desc':'asc';
 for(var c of table.tHead.rows[0].cells)delete c.dataset.dir;th.dataset.dir=dir;var body=table.tBodies[0];
 var rows=Array.from(body.rows).map(function(r,i){return [cellKey(r.cells[col]?r.cells[col].textContent:''),i,r];});
 rows.sort(function(x,y){var c=compareKeys(x[0],y[0]);if(c===0)return x[1]-y[1];
  if(dir==='desc'&&x[0]!==null&&y[0]!==null)c=-c;return c;});
 rows.forEach(function(r){body.appendChild(r[2]);});}
document.querySelectorAll('table.sortable').forEach(function(t){
 Array.from(t.tHead.rows[0].cells).forEach(function(th,i){th.classList.add('sortable');
  th.addEventListener('click',function(){sortTable(t,i);});});});
function column(t,col){return Array.from(t.tBodies[0].rows).map(function(r){return r.cells[col].textContent;});}
window.addEventListener('load',function(){var q=new URLSearchParams(location.search).get('selftest');
 if(q===null)return;var out={images:[],errors:window.__errors,sorted:{}};
 q.split(';').forEach(function(spec){var parts=spec.split(','),t=document.getElementById(parts[0]),col=Number(parts[1]);
  var th=t&&t.tHead?t.tHead.rows[0].cells[col]:null;if(!th)return;
  th.click();var asc=column(t,col);th.click();out.sorted[spec]={asc:asc,desc:column(t,col)};});
 document.querySelectorAll('img').forEach(function(i){out.images.push([i.alt,i.naturalWidth]);});
 var pre=document.createElement('pre');pre.id='selftest';pre.textContent=JSON.stringify(out);
 document.body.appendChild(pre);});
"""


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _link(name: str, text: str | None = None) -> str:
    return f'<a href="{_esc(quote(name))}">{_esc(name if text is None else text)}</a>'


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1024 or unit == "MB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


class _Page:
    """Collects sections; every table gets an id ``t<i>`` (the selftest names tables by it)."""

    def __init__(self):
        self.parts: list[str] = []
        self.tables: dict[str, str] = {}  # table id -> what it shows

    def table(self, header, rows, source: str, caption: str = "") -> None:
        tid = f"t{len(self.tables)}"
        self.tables[tid] = source
        head = "".join(f"<th>{_esc(c)}</th>" for c in header)
        body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in r) + "</tr>" for r in rows)
        cap = f"<caption class='note'>{caption}</caption>" if caption else ""
        self.parts.append(
            f'<table class="sortable" id="{tid}" data-source="{_esc(source)}">{cap}'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        )


def _flatten(value, prefix: str) -> list[tuple[str, str]]:
    """``[(dotted key, text)]`` of a JSON value: dicts are opened, lists shown as JSON (cut short)."""
    if isinstance(value, dict) and value:
        return [kv for k, v in value.items() for kv in _flatten(v, f"{prefix}.{k}" if prefix else str(k))]
    text = value if isinstance(value, str) else json.dumps(value)
    return [(prefix, text if len(text) <= MAX_CELL else text[:MAX_CELL] + " ...")]


def _json_section(page: _Page, path: Path) -> None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except ValueError as err:
        page.parts.append(f"<p class='note'>{_link(path.name)}: not valid JSON ({_esc(err)})</p>")
        return
    page.parts.append(f"<h2>{_esc(path.name)}</h2>")
    if not isinstance(doc, dict):
        doc = {"value": doc}
    scalars = [(k, v) for k, v in doc.items() if not isinstance(v, (dict, list))]
    if scalars:
        page.table(["setting", "value"], [(k, "null" if v is None else v) for k, v in scalars], path.name)
    for key, value in doc.items():
        if not isinstance(value, (dict, list)):
            continue
        rows = _flatten(value, "" if isinstance(value, dict) else key)
        if len(rows) > MAX_ROWS:
            page.parts.append(f"<p class='note'><b>{_esc(key)}</b>: {len(rows):,} values, in {_link(path.name)}</p>")
            continue
        page.parts.append(f"<h3>{_esc(key)}</h3>")
        page.table(["key", "value"], rows, f"{path.name}:{key}")


def _csv_section(page: _Page, path: Path) -> None:
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        rows, total = [], 0
        for row in reader:
            total += 1
            if len(rows) < MAX_ROWS:
                rows.append(row + [""] * (len(header or []) - len(row)))
    page.parts.append(f"<h2>{_esc(path.name)}</h2>")
    if header is None:
        page.parts.append("<p class='note'>empty file</p>")
        return
    shown = f"all {total:,} rows" if total <= MAX_ROWS else f"the first {MAX_ROWS:,} of {total:,} rows"
    page.table(header, rows, path.name, f"{shown} of {_link(path.name)}; click a header to sort")


def _image(path: Path) -> str:
    size = path.stat().st_size
    if size > MAX_EMBED:
        return f"<p class='note'>{_link(path.name)} ({_size(size)}, too large to embed)</p>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    mime = IMAGES[path.suffix.lower()]
    return (
        f'<figure><img alt="{_esc(path.name)}" src="data:{mime};base64,{data}">'
        f"<figcaption>{_link(path.name)}</figcaption></figure>"
    )


def render_report(out_dir: str | os.PathLike, title: str | None = None) -> tuple[str, dict[str, str]]:
    """``(html, tables)``: the page for ``out_dir`` and its table ids (``t<i>`` -> source)."""
    out = Path(out_dir)
    entries = sorted(p for p in out.iterdir() if not p.name.startswith(".") and p.name != REPORT_NAME)
    files = [p for p in entries if p.is_file()]
    page = _Page()
    name = title or out.resolve().name
    page.parts.append(f"<h1>{_esc(name)}</h1><p class='note'>Generated from the files in this directory.</p>")
    page.parts.append("<h2>Files</h2><ul>")
    for p in entries:
        what = "directory" if p.is_dir() else _size(p.stat().st_size)
        sub = f" ({_link(p.name + '/' + REPORT_NAME, 'report')})" if (p / REPORT_NAME).is_file() else ""
        page.parts.append(f"<li>{_link(p.name + '/' * p.is_dir())} <span class='note'>{what}</span>{sub}</li>")
    page.parts.append("</ul>")
    by_kind = lambda *ext: [p for p in files if p.suffix.lower() in ext]
    for p in sorted(by_kind(*TEXTS), key=lambda p: (p.stem != "summary", p.name)):
        text = p.read_text(encoding="utf-8", errors="replace")
        cut = f"\n... ({len(text) - MAX_TEXT:,} more characters in the file)" if len(text) > MAX_TEXT else ""
        page.parts.append(f"<h2>{_esc(p.name)}</h2><pre>{_esc(text[:MAX_TEXT] + cut)}</pre>")
    images = by_kind(*IMAGES)
    if images:
        page.parts.append("<h2>Figures</h2>" + "".join(_image(p) for p in images))
    for p in sorted(by_kind(".json"), key=lambda p: (p.name != "results.json", p.name)):
        _json_section(page, p)
    for p in by_kind(".csv"):
        _csv_section(page, p)
    doc = (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        f"<title>{_esc(name)}</title><script>{ERRORS_JS}</script><style>{STYLE}</style></head>\n<body>\n"
        + "\n".join(page.parts)
        + f"\n<script>{SORT_JS}</script>\n</body></html>\n"
    )
    return doc, page.tables


def write_report(out_dir: str | os.PathLike, title: str | None = None) -> Path:
    """Writes ``report.html`` into ``out_dir`` (atomically) from the files there; returns its path."""
    doc, _ = render_report(out_dir, title)
    return atomic_write_bytes(Path(out_dir) / REPORT_NAME, doc.encode("utf-8"))
