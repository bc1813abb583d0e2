"""The offline docs (tools/docs.py: nbdev's processors, nbconvert, MathJax copied in), checked in headless Chromium.

A toy project (two small notebooks made here) checks the build's rules quickly; the slow test builds the real docs
from every notebook in nbs/ (executed) once and reads every page as Chromium renders it: title, the sidebar in
nbdev's order with the page highlighted, figures decoded, math typeset by MathJax, show_doc sections with their
argument tables, highlighted code, links that resolve, and not one request that leaves the site.
"""
import html, io, json, os, re, shutil, subprocess, sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT/"tools"/"docs.py"
CHROMIUM = Path("/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(),
    reason="headless Chromium is not installed (/usr/bin/chromium: `apt-get install chromium`; .ci/run installs it)")
ENV = dict(os.environ, MPLBACKEND="Agg", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")

def run_tool(cwd, *args, timeout=1500):
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=ENV)

def chromium(tmp, url, *args, timeout=180):
    "Headless Chromium with a fresh profile and nothing of its own on the network; its stdout."
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
  const collect = () => {
    try {
      const w = f.contentWindow, d = f.contentDocument, all = s => [...d.querySelectorAll(s)];
      const kw = d.querySelector(".highlight .kn, .highlight .k");
      res[p] = {h1: all("h1").map(h => h.textContent.trim()),
                nav: all("nav.sidebar ol a").map(a => a.getAttribute("href")),
                active: all("nav.sidebar a.active").map(a => a.getAttribute("href")),
                imgs: all(".jp-OutputArea-output img").map(i => [i.complete, i.naturalWidth, i.naturalHeight, i.getBoundingClientRect().width]),
                main: d.querySelector("main").getBoundingClientRect().width,
                math: all(".MathJax, .MathJax_Display").length, matherr: all(".MathJax_Error").length + (d.body.innerText.includes("Math Processing Error") ? 1 : 0),
                font: w.MathJax && w.MathJax.OutputJax["HTML-CSS"] ? w.MathJax.OutputJax["HTML-CSS"].fontInUse : null,
                api: all("h3[id]").map(h => h.id), tables: all("table").filter(t => t.textContent.includes("Details")).length,
                kw: kw ? [getComputedStyle(kw).color, getComputedStyle(d.body).color] : null};
    } catch (e) { res[p] = {error: String(e)}; }
    if (--left === 0) document.getElementById("res").textContent = JSON.stringify(res);
  };
  f.onload = () => {                           // MathJax typesets after the load event: wait for its "End" hook (else 8 s)
    const w = f.contentWindow, t0 = Date.now();
    (function wait() {
      if (w.MathJax && w.MathJax.Hub && w.MathJax.Hub.Register) w.MathJax.Hub.Register.StartupHook("End", () => setTimeout(collect, 500));
      else if (Date.now() - t0 > 8000) collect();
      else setTimeout(wait, 200);
    })();
  };
  f.src = p; document.body.appendChild(f);
}
</script></body></html>"""

def browse(out, pages, tmp):
    "Load every page in Chromium (one run, an iframe each): what it rendered, and the URLs the pages asked for outside file:."
    (out/"_harness.html").write_text(HARNESS.replace("PAGES", json.dumps(pages)))
    log = Path(tmp)/"netlog.json"
    dom = chromium(tmp, (out/"_harness.html").as_uri(), "--allow-file-access-from-files", "--virtual-time-budget=120000",
                   f"--log-net-log={log}", "--dump-dom")
    m = re.search(r'<pre id="res">(.*?)</pre>', dom, re.S)
    assert m and m.group(1) != "pending", f"Chromium did not finish loading the pages: {dom[-500:]}"
    events = json.loads(log.read_text())["events"]           # Chromium's own requests have no page (file://) initiator
    asked = {e["params"]["url"] for e in events if str((e.get("params") or {}).get("initiator", "")).startswith("file")}
    return json.loads(html.unescape(m.group(1))), sorted(u for u in asked if not u.startswith(("file:", "data:")))

def not_blank(im, min_std=5.0):
    a = np.asarray(im.convert("L"), dtype=float)
    return a.std() > min_std and (a < 128).mean() > 0.001

def check_static(out, page):
    "Every link of a page that stays in the site resolves (file and #anchor); nothing is loaded from outside it."
    text = (out/page).read_text()
    for tag in re.findall(r"<(?:img|script|iframe|link|source|video|audio)\b[^>]*>", text):
        for url in re.findall(r'\s(?:src|href)="([^"]*)"', tag):
            assert url.startswith("data:") or not re.match(r"^([a-z]+:|//)", url), f"{page}: loads {url[:80]}"
    assert not re.search(r"url\((?!['\"]?data:)['\"]?(https?:)?//", text), f"{page}: CSS loads from the network"
    for href in re.findall(r'<a\b[^>]*\shref="([^"]*)"', text):
        if re.match(r"^[a-z]+:", href): continue
        fn, _, anchor = html.unescape(href).partition("#")
        target = out/(fn or page)
        assert target.exists(), f"{page}: link {href} points to a missing file"
        if anchor: assert f'id="{anchor}"' in target.read_text(), f"{page}: link {href}: no id {anchor!r} in {target.name}"

# --- a toy project: the build's rules end to end ---------------------------------------------------------------------

def _nb(path, cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(s[3:]) if s.startswith("md:") else nbformat.v4.new_code_cell(s) for s in cells]
    nbformat.write(nb, path)

@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    (root/"nbs").mkdir()
    (root/"pyproject.toml").write_text('[project]\nname = "toy"\nversion = "0.1"\n[tool.nbdev]\nnbs_path = "nbs"\n'
                                       'lib_path = "toy"\ndoc_path = "_docs"\ntst_flags = "notest slow"\njupyter_hooks = false\n')
    _nb(root/"nbs"/"index.ipynb", ["md:# Toy\n\n> A toy project for the docs build.",
        "md:The residual noise is $\\sigma = \\sqrt{N}\\,e^{-r^2/2}$, see [the plot](01_plot.ipynb).\n\n$$\\int_0^1 x\\,dx = \\frac{1}{2}$$"])
    _nb(root/"nbs"/"01_plot.ipynb", ["md:# Plotting\n\n> One figure.",
        "#| hide\nSECRET_HIDDEN = 1",
        "import numpy as np\nimport matplotlib.pyplot as plt",
        "md:## A figure\n\nA Gaussian in a 64x64 image, drawn by `gauss`.",
        "#| exec_doc\ndef gauss(r:float, # the radius\n          s:float=1.0, # the width\n         )->float: # the value\n    \"A Gaussian.\"\n    return np.exp(-r**2/2/s**2)",
        "y, x = np.mgrid[:64, :64]\nplt.imshow(gauss(np.hypot(x-32, y-20), 5), cmap='gray'); plt.title('a star')",
        "print('hello from', 'the build')",
        "#| eval: false\n1/0  # never run",
        "#| slow\n2/0  # skipped as nbdev-test skips it"])
    r = run_tool(root)
    assert r.returncode == 0, r.stderr
    return root, root/"_docs"

def test_toy_pages(toy):
    root, out = toy
    assert sorted(p.name for p in out.glob("*.html")) == ["index.html", "plot.html"] and (out/"mathjax"/"MathJax.js").exists()
    assert yaml.safe_load((root/"nbs"/"sidebar.yml").read_text())["website"]["sidebar"]["contents"] == ["index.ipynb", "01_plot.ipynb"]
    page = (out/"plot.html").read_text()
    assert "SECRET_HIDDEN" not in page and "hello from the build" in page                 # `#| hide`; stdout shown
    assert "never run" in page and "skipped as nbdev-test" in page and "ZeroDivisionError" not in page   # shown, not run
    assert '<h3 id="gauss"' in page and "the width" in page and "<table" in page          # show_doc with its docments table
    assert re.search(r'<span class="k[nd]?">(import|def)</span>', page)                   # pygments
    for p in ("index.html", "plot.html"): check_static(out, p)
    assert 'href="plot.html"' in (out/"index.html").read_text()                          # notebook links go to pages

@needs_chromium
def test_toy_in_chromium(toy, tmp_path):
    root, out = toy
    (out/"canary.html").write_text('<html><body><h1>c</h1><main></main><img src="http://127.0.0.1:9/canary.png"></body></html>')
    seen, asked = browse(out, ["index.html", "plot.html", "canary.html"], tmp_path)
    assert asked == ["http://127.0.0.1:9/canary.png"]            # the check sees a request, and the pages make none
    del seen["canary.html"]
    assert seen["plot.html"]["h1"] == ["Plotting"] and seen["index.html"]["h1"] == ["Toy"]
    assert all(seen[p]["nav"] == ["index.html", "plot.html"] and seen[p]["active"] == [p] for p in seen)
    assert seen["index.html"]["math"] >= 2 and seen["index.html"]["matherr"] == 0 and seen["index.html"]["font"] == "STIX-Web"
    (complete, w, h, shown), = seen["plot.html"]["imgs"]
    assert complete and w >= 300 and h >= 200 and 200 <= shown <= seen["plot.html"]["main"]
    assert seen["plot.html"]["api"] == ["gauss"] and seen["plot.html"]["tables"] == 1
    assert seen["plot.html"]["kw"][0] != seen["plot.html"]["kw"][1]                     # keywords coloured
    chromium(tmp_path, (out/"plot.html").as_uri(), "--window-size=1280,1000", f"--screenshot={tmp_path/'plot.png'}")
    assert not_blank(Image.open(tmp_path/"plot.png"))

def test_failing_notebook_fails_the_build(toy, tmp_path):
    root, _ = toy
    bad = tmp_path/"bad"; shutil.copytree(root/"nbs", bad/"nbs"); shutil.copy(root/"pyproject.toml", bad)
    _nb(bad/"nbs"/"02_broken.ipynb", ["md:# Broken", "x = 1", "import numpy as np\nnp.zeros(3) @ np.zeros(4)"])
    r = run_tool(bad, "--only", "broken plot")
    assert r.returncode != 0 and "02_broken.ipynb: ValueError: matmul" in r.stderr and "np.zeros(3) @ np.zeros(4)" in r.stderr
    assert (bad/"_docs"/"plot.html").exists() and not (bad/"_docs"/"broken.html").exists()
    _nb(bad/"nbs"/"02_broken.ipynb", ["md:# Slow", "import time; time.sleep(9)"])
    r = run_tool(bad, "--only", "broken", "--timeout", "3")
    assert r.returncode != 0 and "02_broken.ipynb: TimeoutError: Timed out after 3s" in r.stderr
    assert run_tool(bad, "--only", "nosuch").returncode != 0

# --- the real docs, every notebook executed --------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.browser
@needs_chromium
def test_project_docs_in_chromium(tmp_path):
    "The docs of every notebook of nbs/ (.ci/run's, from nbdev-test's run; else built here), read as Chromium renders them."
    from nbdev.config import nbpath2html
    import realdata                                     # the AU Mic cells run where the data can be had, as in nbdev-test
    out = Path(os.environ.get("CORONLIT_DOCS") or tmp_path/"_docs")
    if not os.environ.get("CORONLIT_DOCS"):
        r = run_tool(ROOT, "--out", out, "--jobs", "2", *(["--flags", "realdata"] if realdata.folder() else []))
        assert r.returncode == 0, r.stderr
    order = yaml.safe_load((ROOT/"nbs"/"sidebar.yml").read_text())["website"]["sidebar"]["contents"]
    nbs = sorted(p.name for p in (ROOT/"nbs").glob("*.ipynb"))
    assert order == ["index.ipynb"] + [n for n in nbs if n != "index.ipynb"]        # every notebook, in order, none by hand
    pages = [nbpath2html(n).name for n in order]
    assert sorted(p.name for p in out.glob("*.html") if not p.name.startswith("_")) == sorted(pages)   # _harness.html
    seen, asked = browse(out, pages, tmp_path)
    assert not asked, f"pages asked the network for {asked}"
    for page, nb in zip(pages, order):
        got, cells = seen[page], nbformat.read(ROOT/"nbs"/nb, 4).cells
        assert "error" not in got, f"{page}: {got.get('error')}"
        assert len(got["h1"]) == 1 and got["h1"][0], f"{page}: no title"
        assert got["nav"] == pages and got["active"] == [page], f"{page}: sidebar {got['nav']}, highlighted {got['active']}"
        check_static(out, page)
        for i, (complete, w, h, shown) in enumerate(got["imgs"]):
            assert complete and w >= 100 and h >= 50, f"{page}: figure {i} did not load ({w}x{h})"
            assert 50 <= shown <= got["main"], f"{page}: figure {i} shown {shown}px wide in a {got['main']}px column"
        plots = [c for c in cells if c.cell_type == "code" and re.search(r"subplots\(|plt\.(figure|plot|imshow|hist|scatter)\(", c.source)
                 and not re.search(r"#\|\s*(eval:\s*false|hide|slow|notest|realdata|export|output:\s*false)", c.source)]
        if plots: assert got["imgs"], f"{page}: the notebook plots but the page has no figure"
        if any(c.cell_type == "markdown" and re.search(r"\$[^$\s][^$]*\$", re.sub(r"`[^`]*`", "", c.source)) for c in cells):
            assert got["math"] and not got["matherr"] and got["font"] == "STIX-Web", f"{page}: math not typeset ({got['math']}, {got['matherr']})"
        exported = [m for c in cells if c.cell_type == "code" and re.match(r"#\|\s*export\b", c.source)
                    for m in re.findall(r"^(?:def|class) ([A-Za-z]\w*)", c.source, re.M)]
        assert {e.lower() for e in exported} <= set(got["api"]), f"{page}: no show_doc for {set(exported) - set(got['api'])}"
        if exported: assert got["tables"], f"{page}: no argument table"
        if got["kw"]: assert got["kw"][0] != got["kw"][1], f"{page}: code not highlighted"
    for page in ["index.html", next(p for p in pages if seen[p]["imgs"] and seen[p]["tables"])]:
        shot = tmp_path/f"{page}.png"
        chromium(tmp_path, (out/page).as_uri(), "--window-size=1280,900", "--virtual-time-budget=10000", f"--screenshot={shot}")
        assert not_blank(Image.open(shot)), f"{page}: the screenshot is blank"
