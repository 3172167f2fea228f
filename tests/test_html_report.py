"""report.html: one offline page per output directory, checked by a parser (every machine) and in a
real browser (headless Chromium, skipped with the reason where it is not installed)."""

from __future__ import annotations

import base64
import csv
import io
import json
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest
from PIL import Image

from jaxopt_cmp.html_report import MAX_ROWS, REPORT_NAME, write_report

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import compare  # noqa: E402
import study  # noqa: E402

# The shapes of tests/test_cli.py's in-process compare run: in one pytest session the study below
# reuses its compiled program (run_study keeps it per process; lr values are arrays, not shapes).
TINY = "--iters 20 --eval-every 10 --n-data 128 --batch-size 16 --hidden 8".split()
HOSTILE = '<img src=x onerror="alert(1)">&amp;'  # a file name and a value as a user may give them


class Page(HTMLParser):
    """What a page holds, as a browser's parser sees it: images, links, scripts, tables, <pre> texts."""

    def __init__(self, text: str):
        super().__init__()
        self.images, self.links, self.scripts, self.pres, self.metas = [], [], [], [], []
        self.tables: dict[str, dict] = {}
        self._table = self._row = self._cell = self._pre = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a)
        elif tag == "a":
            self.links.append(a["href"])
        elif tag == "script":
            self.scripts.append(a)
        elif tag == "meta":
            self.metas.append(a)
        elif tag == "table":
            self._table = self.tables.setdefault(a["id"], {"source": a.get("data-source"), "head": [], "rows": []})
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "pre":
            self._pre = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._table is not None:
            if self._table["head"]:
                self._table["rows"].append(self._row)
            else:
                self._table["head"] = self._row
        elif tag == "table":
            self._table = None
        elif tag == "pre":
            self.pres.append("".join(self._pre))
            self._pre = None

    def handle_data(self, data):
        for part in (self._cell, self._pre):
            if part is not None:
                part.append(data)

    def table(self, source: str) -> tuple[str, dict]:
        return next((tid, t) for tid, t in self.tables.items() if t["source"] == source)


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory) -> Path:
    """A tiny study (sgd and adam at lr 0.05 x 2 seeds, 20 steps) written by scripts/study.py."""
    out = tmp_path_factory.mktemp("html") / "study"
    args = [*TINY, "--optimizers", "sgd,adam", "--lrs", "0.05", "--seeds", "2", "--out", str(out)]
    study.main(args)
    return out


def read_csv(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text())))


def link_targets(page: Page, page_path: Path) -> set[str]:
    """Where each link leads, resolved as a browser does (a raw '#' or '?' would cut the name)."""
    targets = set()
    for href in page.links:
        url = urlsplit(urljoin(page_path.as_uri(), href))
        assert url.scheme == "file" and not url.query and not url.fragment, href
        targets.add(str(Path(unquote(url.path)).relative_to(page_path.parent)) + "/" * href.endswith("/"))
    return targets


def check_images(page: Page) -> list[tuple[int, int]]:
    """Every image is a data: URI that decodes to a non-empty picture; returns their sizes."""
    sizes = []
    for img in page.images:
        head, _, data = img["src"].partition(",")
        assert head.startswith("data:image/") and head.endswith(";base64"), head[:60]
        picture = Image.open(io.BytesIO(base64.b64decode(data, validate=True)))
        picture.load()
        assert picture.width > 0 and picture.height > 0, img["alt"]
        sizes.append(picture.size)
    return sizes


def test_study_page_holds_every_file_table_figure_and_the_statistics(study_dir):
    page = Page((study_dir / REPORT_NAME).read_text())
    files = sorted(p.name for p in study_dir.iterdir() if not p.name.startswith(".") and p.name != REPORT_NAME)
    assert {"results.json", "runs.csv", "history.csv", "summary.txt", "lr_sensitivity.png"} <= set(files)
    assert sorted(link_targets(page, study_dir / REPORT_NAME)) == files  # a link to every file, only to files
    pngs = sorted(n for n in files if n.endswith(".png"))
    assert sorted(img["alt"] for img in page.images) == pngs
    assert len(check_images(page)) == len(pngs) == 3
    for name in ("runs.csv", "history.csv"):  # every CSV a table: its header and all its (few) rows
        header, *rows = read_csv(study_dir / name)
        _, table = page.table(name)
        assert table["head"] == header and table["rows"] == rows and len(rows) > 1
    assert all(t["head"] and t["rows"] for t in page.tables.values())
    doc = json.loads((study_dir / "results.json").read_text())
    config = dict(map(tuple, page.table("results.json:config")[1]["rows"]))
    assert config["train.iters"] == "20" and config["model.hidden"] == "[8]" and config["seeds"] == "2"
    versions = dict(map(tuple, page.table("results.json:versions")[1]["rows"]))
    assert versions == doc["versions"]
    timing = dict(map(tuple, page.table("results.json:timing")[1]["rows"]))
    assert set(timing) == set(doc["timing"]) and "train_s" in timing
    summary = (study_dir / "summary.txt").read_text()  # the statistics as printed, caveats included
    assert "bootstrap CI" in summary and "note: 2 seeds" in summary and "sign-test p" in summary
    assert summary in page.pres
    metas = [m for m in page.metas if m.get("http-equiv") == "Content-Security-Policy"]
    assert metas and "default-src 'none'" in metas[0]["content"]  # offline: nothing loads from outside
    assert len(page.scripts) == 2 and not any("src" in s for s in page.scripts)


def test_from_dir_regenerates_the_page_from_saved_results(study_dir, tmp_path):
    """``--from`` re-renders: the same statistics and tables, written by a process that trained nothing."""
    out = tmp_path / "again"
    study.main(["--from", str(study_dir), "--out", str(out), "--no-plots"])
    page = Page((out / REPORT_NAME).read_text())
    assert (out / "summary.txt").read_text() == (study_dir / "summary.txt").read_text()
    assert page.table("runs.csv")[1]["rows"] == read_csv(study_dir / "runs.csv")[1:]
    assert page.images == [] and not list(out.glob("*.png"))  # --no-plots: the page, without figures


def test_compare_writes_the_page_without_plots(tmp_path):
    """compare.py (eager torch: nothing to compile) with --no-plots: the page, its final table, no images."""
    out = tmp_path / "cmp"
    compare.main([*TINY, "--framework", "torch", "--optimizers", "sgd,adam", "--no-plots", "--out", str(out)])
    page = Page((out / REPORT_NAME).read_text())
    assert page.images == [] and "final train MSE" in (out / "summary.txt").read_text()
    assert (out / "summary.txt").read_text() in page.pres
    assert dict(map(tuple, page.table("results.json")[1]["rows"]))["framework"] == "torch"


@pytest.fixture
def hostile_dir(tmp_path) -> Path:
    """File names and values with markup in them, a long table, a broken JSON file: no JAX needed."""
    d = tmp_path / "hostile"
    d.mkdir()
    rows = [["x", HOSTILE]] + [[str(i), f"<script>alert({i})</script>"] for i in range(MAX_ROWS + 50)]
    with open(d / f"{HOSTILE}.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    (d / "notes.txt").write_text(f"</pre><script>alert('pre')</script>{HOSTILE}")
    history = {str(step): [0.5] for step in range(MAX_ROWS + 1)}  # too many values for a page
    (d / "results.json").write_text(json.dumps({"config": {"source": HOSTILE}, "note": "<b>x</b>", "history": history}))
    (d / "broken.json").write_text("{not json")
    (d / "sub dir #1").mkdir()
    (d / ".lock").write_text("hidden")
    return d


def test_everything_from_the_user_is_escaped(hostile_dir):
    path = write_report(hostile_dir)
    text = path.read_text()
    page = Page(text)
    assert len(page.scripts) == 2 and page.images == []  # no markup from the files became elements
    assert "<script>alert" not in text and "<img src=x" not in text
    _, table = page.table(f"{HOSTILE}.csv")
    assert table["head"] == ["x", HOSTILE]  # shown as the text it is
    assert len(table["rows"]) == MAX_ROWS and table["rows"][0] == ["0", "<script>alert(0)</script>"]
    assert f"the first {MAX_ROWS} of {MAX_ROWS + 50} rows" in text
    assert "</pre><script>alert('pre')</script>" + HOSTILE in page.pres
    assert dict(map(tuple, page.table("results.json:config")[1]["rows"]))["source"] == HOSTILE
    assert "broken.json" in text and "not valid JSON" in text
    assert f"{MAX_ROWS + 1} values, in" in text  # a section too large for the page is named and linked
    assert not any(t["source"].endswith(":history") for t in page.tables.values())
    targets = link_targets(page, path)
    assert targets == {f"{HOSTILE}.csv", "notes.txt", "results.json", "broken.json", "sub dir #1/"}
    assert all((hostile_dir / t).exists() for t in targets)


# A real browser.


def find_chromium() -> str | None:
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome", "chrome"))), None)


CHROMIUM = find_chromium()
needs_browser = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH (.ci/run installs Debian's chromium; apt-get install chromium)"
)


def browse(url: str, profile: Path, *action: str) -> subprocess.CompletedProcess:
    """Headless Chromium on ``url`` (``--no-sandbox``: CI runs as root); stderr carries the console."""
    cmd = [
        CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", f"--user-data-dir={profile}", "--hide-scrollbars",
        "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000", *action, url,
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def console_lines(proc) -> list[str]:
    return [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]


def selftest(proc) -> dict:
    return json.loads(next(p for p in Page(proc.stdout).pres if p.startswith('{"images"')))


@needs_browser
def test_browser_catches_a_broken_page(tmp_path):
    """The detector works: a page that throws is seen on the console and in its own error list."""
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "notes.txt").write_text("x")
    page = write_report(bad)
    page.write_text(page.read_text().replace("</body>", "<script>undefinedFunction()</script></body>"))
    proc = browse(page.as_uri() + "?selftest=none", tmp_path / "profile", "--dump-dom")
    assert any("undefinedFunction" in line for line in console_lines(proc))
    assert any("undefinedFunction" in e for e in selftest(proc)["errors"])


MIXED = ["10", "9", "", "inf", "abc", "-inf", "1e-3"]  # numbers (not text order), inf, text, an empty cell


@needs_browser
def test_page_in_a_real_browser(study_dir, tmp_path):
    """The study's page, with a new kind of output beside it (a CSV the page's code never heard of):
    loads with no console output, every image decodes, a header click sorts a column both ways
    (numbers as numbers), and a screenshot shows something."""
    copy = shutil.copytree(study_dir, tmp_path / "study")
    with open(copy / "extra.csv", "w", newline="") as f:
        csv.writer(f).writerows([["name", "value"], *([f"r{i}", v] for i, v in enumerate(MIXED))])
    page = write_report(copy)
    parsed = Page(page.read_text())
    (runs, table), (extra, _) = parsed.table("runs.csv"), parsed.table("extra.csv")
    col = table["head"].index("final_mse")
    query = f"{runs},{col};{extra},1"
    proc = browse(f"{page.as_uri()}?selftest={query}", tmp_path / "profile", "--dump-dom")
    assert console_lines(proc) == []
    seen = selftest(proc)
    assert seen["errors"] == []
    assert len(seen["images"]) == 3 and all(width > 0 for _, width in seen["images"]), seen["images"]
    values = [float(r[col]) for r in table["rows"]]
    by_mse = seen["sorted"][f"{runs},{col}"]
    assert [float(v) for v in by_mse["asc"]] == sorted(values) != values
    assert [float(v) for v in by_mse["desc"]] == sorted(values, reverse=True)
    assert seen["sorted"][f"{extra},1"] == {
        "asc": ["-inf", "1e-3", "9", "10", "inf", "abc", ""],
        "desc": ["abc", "inf", "10", "9", "1e-3", "-inf", ""],
    }
    shot = tmp_path / "shot.png"
    browse(page.as_uri(), tmp_path / "profile", f"--screenshot={shot}", "--window-size=1000,1400")
    picture = Image.open(shot).convert("RGB")
    colours = picture.getcolors(maxcolors=1 << 20)
    white = dict((c, n) for n, c in colours).get((255, 255, 255), 0)
    assert len(colours) > 20 and white < 0.97 * picture.width * picture.height, (len(colours), white)
