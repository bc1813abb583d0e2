"""The offline documentation build (tools/offline_docs.py), checked in headless Chromium as a reader would see it.

A toy project (two small notebooks made here: prose, math, a figure, hidden and unevaluated cells, a failing notebook)
checks the build's rules quickly; the slow test builds the real docs from every notebook in nbs/ (executed) once and
opens every page in Chromium: the page loads, its figures are non-blank PNGs, the sidebar lists every page in order
with the current one highlighted, and every link resolves to a file.
"""
import base64, html, importlib.util, io, json, os, re, shutil, subprocess, sys
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT/"tools"/"offline_docs.py"
CHROMIUM = Path("/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(),
    reason="headless Chromium is not installed (/usr/bin/chromium: `apt-get install chromium`; .ci/run installs it)")

spec = importlib.util.spec_from_file_location("offline_docs", TOOL)
od = importlib.util.module_from_spec(spec); spec.loader.exec_module(od)

ENV = dict(os.environ, MPLBACKEND="Agg", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")

def run_tool(*args, timeout=1500):
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True, text=True, timeout=timeout, env=ENV)

def chromium(tmp, url, *args, timeout=120):
    "Run headless Chromium with the flags it needs on a closed network and a fresh profile; its stdout."
    prof = Path(tmp)/f"profile{len(list(Path(tmp).glob('profile*')))}"
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
           f"--user-data-dir={prof}", *args, url]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    shutil.rmtree(prof, ignore_errors=True)
    assert r.returncode == 0, f"chromium failed on {url}: {r.stderr[-800:]}"
    return r.stdout

HARNESS = """<!doctype html><html><body><pre id="res">pending</pre><script>
const pages = PAGES, res = {}; let left = pages.length;
for (const p of pages) {
  const f = document.createElement("iframe"); f.style.width = "1280px"; f.style.height = "900px";
  f.onload = () => {
    try {
      const d = f.contentDocument, txt = s => [...d.querySelectorAll(s)];
      res[p] = {h1: txt("h1").map(h => h.textContent.trim()),
                nav: txt("nav.sidebar ol a").map(a => a.getAttribute("href")),
                active: txt("nav.sidebar a.active").map(a => a.getAttribute("href")),
                imgs: txt("figure.output img").map(i => [i.complete, i.naturalWidth, i.naturalHeight, i.getBoundingClientRect().width]),
                font: getComputedStyle(d.body).fontSize, main: d.querySelector("main").getBoundingClientRect().width};
    } catch (e) { res[p] = {error: String(e)}; }
    if (--left === 0) document.getElementById("res").textContent = JSON.stringify(res);
  };
  f.src = p; document.body.appendChild(f);
}
</script></body></html>"""

def browse(out, pages, tmp):
    "Load every page in Chromium (one run, one iframe each) and read what it rendered: title, sidebar, decoded figures."
    (out/"_harness.html").write_text(HARNESS.replace("PAGES", json.dumps(pages)))
    dom = chromium(tmp, (out/"_harness.html").as_uri(), "--allow-file-access-from-files", "--virtual-time-budget=60000", "--dump-dom")
    m = re.search(r'<pre id="res">(.*?)</pre>', dom, re.S)
    assert m and m.group(1) != "pending", f"Chromium did not finish loading the pages: {dom[-500:]}"
    return json.loads(html.unescape(m.group(1)))

class Dom(HTMLParser):
    "What the tests read from a rendered page: sidebar links, the highlighted one, all links, images, headings."
    def __init__(self, text):
        super().__init__(); self.nav, self.active, self.links, self.imgs, self.h1 = [], [], [], [], []
        self._in_nav = self._in_h1 = False; self.feed(text)
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "nav" and "sidebar" in (a.get("class") or ""): self._in_nav = True
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
            if self._in_nav and "brand" not in (a.get("class") or ""):
                self.nav.append(a["href"])
                if "active" in (a.get("class") or ""): self.active.append(a["href"])
        if tag == "img": self.imgs.append(a.get("src", ""))
        if tag == "h1": self._in_h1 = True; self.h1.append("")
    def handle_endtag(self, tag):
        if tag == "nav": self._in_nav = False
        if tag == "h1": self._in_h1 = False
    def handle_data(self, data):
        if self._in_h1: self.h1[-1] += data

def png_images(dom):
    "The page's data:image/png images, decoded."
    return [Image.open(io.BytesIO(base64.b64decode(s.split(",", 1)[1]))) for s in dom.imgs if s.startswith("data:image/png;base64,")]

def not_blank(im, min_std=5.0):
    a = np.asarray(im.convert("L"), dtype=float)
    return a.std() > min_std and (a < 128).mean() > 0.001

def check_links(out, page, dom):
    "Every local link of a page resolves to a file in the site (and its #anchor to an id in that file)."
    for href in dom.links:
        if re.match(r"^[a-z]+:", href): continue
        fn, _, anchor = href.partition("#")
        target = out/(fn or page)
        assert target.exists(), f"{page}: link {href} points to a missing file"
        if anchor: assert f'id="{anchor}"' in target.read_text(), f"{page}: link {href}: no id {anchor!r} in {target.name}"

# --- the rules, on pure functions -------------------------------------------------------------------------------------

def test_page_names_and_directives():
    test_cases = {"index.ipynb": "index.html", "00_core.ipynb": "core.html", "12_align_refs.ipynb": "align_refs.html",
                  "coron3.ipynb": "coron3.html"}
    for nb, html in test_cases.items(): assert od.page_name(Path(nb)) == html
    assert od.directives("#| export\ndef f(): pass") == {"export": ""}
    assert od.directives("#|hide\n#| eval: false\nx = 1\n#| not a directive") == {"hide": "", "eval": "false"}
    assert od.directives("#| default_exp align_refs\n") == {"default_exp": "align_refs"}
    assert od.strip_directive_lines("#| export\n#| echo: false\nx = 1\ny = 2") == "x = 1\ny = 2"
    assert od.exported_defs("#| export\ndef f(): pass\ndef _g(): pass\nclass A: pass\nX = 1") == [("f", None), ("A", None)]
    assert od.exported_defs("#| export\n@patch\ndef roll(self:Exposure): pass") == [("Exposure.roll", "Exposure")]
    order = [p.relative_to(ROOT).as_posix() for p in od.find_notebooks()]
    nbs = [n for n in order if n.startswith("nbs/")]
    assert nbs[0] == "nbs/index.ipynb" and nbs[1:] == sorted(nbs[1:]) and order[:len(nbs)] == nbs   # coron3 (root) last

def test_sidebar_yml_matches_nbdev(capsys):
    "nbs/sidebar.yml text is what nbdev's own nbdev_sidebar writes (so nbdev-docs would not change it), and lists every notebook."
    import yaml
    from nbdev.quarto import nbdev_sidebar
    ours = od.sidebar_yaml(ROOT/"nbs")
    cwd = os.getcwd()
    try:
        os.chdir(ROOT); nbdev_sidebar.__wrapped__(path=str(ROOT/"nbs"), printit=True, force=True)
    finally: os.chdir(cwd)
    assert ours.strip() == capsys.readouterr().out.strip()
    contents = yaml.safe_load(ours)["website"]["sidebar"]["contents"]
    assert contents == [p.name for p in od.find_notebooks() if p.parent == ROOT/"nbs"] and contents[0] == "index.ipynb"

# --- a toy project: the build's rules end to end ---------------------------------------------------------------------

def _nb(path, cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(s[3:]) if s.startswith("md:") else nbformat.v4.new_code_cell(s) for s in cells]
    nbformat.write(nb, path)

@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    (root/"nbs").mkdir()
    _nb(root/"nbs"/"index.ipynb", ["md:# Toy\n\n> A toy project for the docs build.",
        "md:The residual noise is $\\sigma = \\sqrt{N}\\,e^{-r^2/2}$, see [the plot](01_plot.ipynb).\n\n$$\\int_0^1 x\\,dx = \\frac{1}{2}$$"])
    _nb(root/"nbs"/"01_plot.ipynb", ["md:# Plotting\n\n> One figure.",
        "#| hide\nSECRET_HIDDEN = 1",
        "import numpy as np\nimport matplotlib.pyplot as plt",
        "md:## A figure\n\nA Gaussian in a 64x64 image.",
        "y, x = np.mgrid[:64, :64]\nplt.imshow(np.exp(-((x-32)**2 + (y-20)**2) / 50), cmap='gray'); plt.title('a star')",
        "print('hello from', 'the build')",
        "#| eval: false\n1/0  # never run"])
    _nb(root/"coron3.ipynb", ["md:# Report\n\n> A root notebook that writes products relative to its folder.",
        "from pathlib import Path\nPath('coron3_out').mkdir(); Path('coron3_out/x.txt').write_text('x'); print('wrote', Path('coron3_out/x.txt').exists())"])
    out = root/"_docs"
    r = run_tool("--root", root, "--out", out, "--no-sidebar")
    assert r.returncode == 0, r.stderr
    return root, out

def test_toy_pages(toy):
    root, out = toy
    assert sorted(p.name for p in out.glob("*.html")) == ["coron3.html", "index.html", "plot.html"] and (out/"style.css").exists()
    assert "wrote True" in (out/"coron3.html").read_text() and not (root/"coron3_out").exists()   # ran in a scratch folder
    html = (out/"plot.html").read_text()
    assert "SECRET_HIDDEN" not in html                                   # `#| hide` cells are not shown
    assert "hello from the build" in html                                # stdout is shown
    assert "never run" in html and "ZeroDivisionError" not in html       # `#| eval: false`: shown, not run
    assert 'class="highlight"' in html and '<span class="n">plt</span>' in html   # pygments
    resources = re.findall(r'<(?:img|script|iframe)[^>]*\ssrc="([^"]*)"|<link[^>]*\shref="([^"]*)"', html)
    assert resources and all(s.startswith("data:") or l == "style.css" for s, l in resources)   # nothing from the network
    assert not re.search(r"url\(|@import", (out/"style.css").read_text())
    index = (out/"index.html").read_text()
    assert 'href="plot.html"' in index                                   # notebook links go to their pages
    assert index.count('class="math') >= 2 and "data:image/svg+xml" in index   # inline and display math as SVG

@needs_chromium
def test_toy_in_chromium(toy, tmp_path):
    root, out = toy
    seen = browse(out, ["index.html", "plot.html", "coron3.html"], tmp_path)
    assert seen["plot.html"]["h1"] == ["Plotting"] and seen["index.html"]["h1"] == ["Toy"] and seen["coron3.html"]["h1"] == ["Report"]
    assert all(seen[p]["nav"] == ["index.html", "plot.html", "coron3.html"] and seen[p]["active"] == [p] for p in seen)
    (complete, w, h, shown), = seen["plot.html"]["imgs"]             # the browser decoded the figure ...
    assert complete and w >= 300 and h >= 200 and 200 <= shown <= seen["plot.html"]["main"]   # ... and fits the column
    assert seen["plot.html"]["font"] == "16px"
    dom = Dom((out/"plot.html").read_text())
    imgs = png_images(dom)
    assert len(imgs) == 1 and not_blank(imgs[0])
    check_links(out, "plot.html", dom)
    chromium(tmp_path, (out/"plot.html").as_uri(), "--window-size=1280,1000", f"--screenshot={tmp_path/'plot.png'}")
    shot = Image.open(tmp_path/"plot.png")
    assert shot.size == (1280, 1000) and not_blank(shot)

def test_toy_options(toy, tmp_path):
    root, _ = toy
    r = run_tool("--root", root, "--out", tmp_path/"a", "--no-exec", "--only", "01_plot", "--no-sidebar")
    assert r.returncode == 0, r.stderr
    assert [p.name for p in (tmp_path/"a").glob("*.html")] == ["plot.html"]
    assert "data:image/png" not in (tmp_path/"a"/"plot.html").read_text()       # --no-exec: no outputs
    r = run_tool("--root", root, "--out", tmp_path/"b", "--only", "nosuch", "--no-exec")
    assert r.returncode == 1 and "no notebook named nosuch" in r.stderr

def test_failing_notebook_fails_the_build(toy, tmp_path):
    root, _ = toy
    bad = tmp_path/"bad"; shutil.copytree(root/"nbs", bad/"nbs")
    _nb(bad/"nbs"/"02_broken.ipynb", ["md:# Broken", "x = 1", "import numpy as np\nnp.zeros(3) @ np.zeros(4)"])
    r = run_tool("--root", bad, "--out", bad/"_docs", "--no-sidebar")
    assert r.returncode == 1
    assert "nbs/02_broken.ipynb: cell 3 (of 3) raised ValueError" in r.stderr and "np.zeros(3) @ np.zeros(4)" in r.stderr
    assert (bad/"_docs"/"plot.html").exists() and not (bad/"_docs"/"broken.html").exists()
    _nb(bad/"nbs"/"02_broken.ipynb", ["md:# Slow", "import time; time.sleep(60)"])
    r = run_tool("--root", bad, "--out", bad/"_docs", "--only", "broken", "--timeout", "8", "--no-sidebar")
    assert r.returncode == 1 and "nbs/02_broken.ipynb: execution timed out after 8 s" in r.stderr

# --- the real docs, every notebook executed --------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.browser
@needs_chromium
def test_project_docs_in_chromium(tmp_path):
    "Build the docs of every notebook in the repository (executed) and read each page as Chromium renders it."
    out = tmp_path/"_docs"
    nbs = od.find_notebooks()
    pages = [od.page_name(p) for p in nbs]
    r = run_tool("--out", out, "--no-sidebar", "--jobs", "2")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.glob("*.html")) == sorted(pages)
    seen = browse(out, pages, tmp_path)
    assert sorted(seen) == sorted(pages)
    for page, nb in zip(pages, nbs):
        got = seen[page]
        assert "error" not in got, f"{page}: {got.get('error')}"
        assert len(got["h1"]) == 1 and got["h1"][0], f"{page}: no title"
        assert got["nav"] == pages, f"{page}: sidebar lists {got['nav']}"
        assert got["active"] == [page], f"{page}: highlighted {got['active']}"
        for i, (complete, w, h, shown) in enumerate(got["imgs"]):
            assert complete and w >= 100 and h >= 50, f"{page}: figure {i} did not load ({w}x{h})"
            assert 50 <= shown <= got["main"], f"{page}: figure {i} shown {shown}px wide in a {got['main']}px column"
        dom = Dom((out/page).read_text())
        check_links(out, page, dom)
        figs = png_images(dom)
        assert len(figs) == len(got["imgs"])
        for i, im in enumerate(figs): assert not_blank(im), f"{page}: figure {i} is blank"
        plots = [c for c in nbformat.read(nb, 4).cells if c.cell_type == "code" and re.search(r"subplots\(|plt\.(figure|plot|imshow|hist|scatter)\(", c.source)
                 and not re.search(r"#\|\s*(eval:\s*false|hide|slow|notest|output:\s*false)", c.source)]
        if plots: assert figs, f"{page}: the notebook plots but the page has no figure"
    with_fig = next((p for p in pages if seen[p]["imgs"]), pages[0])
    for page in dict.fromkeys(["index.html", with_fig]):
        shot = tmp_path/f"{page}.png"
        chromium(tmp_path, (out/page).as_uri(), "--window-size=1280,900", f"--screenshot={shot}")
        assert not_blank(Image.open(shot)), f"{page}: the screenshot is blank"
