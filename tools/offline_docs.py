"""Offline documentation build (Quarto cannot be installed here) and README generation.

    python tools/offline_docs.py --readme    # write README.md from nbs/index.ipynb
    python tools/offline_docs.py             # execute every notebook, write _docs/ (one HTML page each) and nbs/sidebar.yml
    python tools/offline_docs.py --no-exec --only align_refs --out /tmp/docs   # one page, without outputs
    python tools/offline_docs.py --sidebar   # write nbs/sidebar.yml (the Quarto site's sidebar) and stop

Pages: nbs/index.ipynb -> index.html, nbs/NN_name.ipynb -> name.html, ./coron3.ipynb -> coron3.html. Each notebook is
executed in a separate process with MPLBACKEND=Agg and a time limit (nbs/ notebooks with nbs/ as the working folder,
coron3.ipynb in a scratch folder that is deleted), skipping the cells nbdev-test skips (`#| eval: false` and the
tst_flags of pyproject.toml); a cell that raises fails the build, naming the notebook and the cell.
Everything a page needs (CSS, figures as PNG data, math as SVG) is inside _docs/: no network.
"""
import argparse, shutil, re
from pathlib import Path
import nbformat

ROOT = Path(__file__).resolve().parents[1]

def _strip_directives(src):
    "Drop `#| ...` directive lines from a code cell."
    return "\n".join(l for l in src.splitlines() if not l.startswith("#|")).strip()

def _readme_links(md):
    "Point the prose's relative links and images (written from nbs/) at nbs/ from the repository root."
    return re.sub(r"(\]\()(?!https?:|#|/|mailto:)([^)\s]+)", r"\1nbs/\2", md)

def readme_text(nb_path=ROOT/"nbs"/"index.ipynb"):
    "README markdown from the index notebook: prose as is, the title's summary as a quote, code as code blocks."
    nb = nbformat.read(nb_path, as_version=4)
    parts = []
    for c in nb.cells:
        if c.cell_type == "markdown": parts.append(_readme_links(c.source.strip()))
        elif c.cell_type == "code":
            src = _strip_directives(c.source)
            if src and "hide" not in c.source.split("\n", 1)[0]: parts.append(f"```python\n{src}\n```")
    return "<!-- generated from nbs/index.ipynb by tools/offline_docs.py --readme; edit the notebook -->\n\n" + "\n\n".join(parts) + "\n"

def write_readme():
    (ROOT/"README.md").write_text(readme_text())

# ---------------------------------------------------------------------------------------------------------------------
# The HTML documentation build. Its heavy imports (markdown-it, pygments, execnb, matplotlib, fastcore, the package)
# happen inside the functions that use them, so `--readme` stays as light as before.

import ast, base64, html, importlib, inspect, io, json, os, signal, subprocess, sys, tempfile, time, tomllib, warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields, is_dataclass, MISSING

class DocsError(Exception):
    "A documentation build problem, reported as one line naming the notebook."

@dataclass
class Page:
    src: Path                      # the notebook
    out: str                       # the HTML file name, e.g. "align_refs.html"
    title: str = ""                # from the first `# Title` (or the front matter)
    summary: str = ""              # the `> summary` line under the title
    module: str | None = None      # `#| default_exp` module, e.g. "align_refs"
    symbols: list = field(default_factory=list)   # exported public names, in order
    root: Path = ROOT              # the project folder

    @property
    def rel(self): return self.src.relative_to(self.root).as_posix() if self.src.is_relative_to(self.root) else str(self.src)

def page_name(nb: Path) -> str:
    "HTML file name of a notebook: the numeric prefix stripped as nbdev/Quarto do (`12_align_refs` -> `align_refs.html`)."
    return re.sub(r"^\d+_", "", nb.stem) + ".html"

def find_notebooks(root: Path = ROOT) -> list:
    "The documented notebooks in order: nbs/index.ipynb, nbs/NN_*.ipynb by name, then the root coron3.ipynb."
    nbs = sorted(p for p in (root/"nbs").glob("*.ipynb") if not p.name.startswith(("_", ".")))
    nbs.sort(key=lambda p: (p.name != "index.ipynb", p.name))
    if (root/"coron3.ipynb").exists(): nbs.append(root/"coron3.ipynb")
    return nbs

# --- reading notebooks ------------------------------------------------------------------------------------------------

_re_dir = re.compile(r"^\s*#\|\s*(.*?)\s*$")

def directives(src: str) -> dict:
    "The `#|` directives at the top of a code cell: `#| export` -> {'export': ''}, `#| eval: false` -> {'eval': 'false'}."
    d = {}
    for line in src.splitlines():
        m = _re_dir.match(line)
        if not m:
            if line.strip() == "" or line.lstrip().startswith("#"): continue
            break
        body = m.group(1)
        key, sep, val = body.partition(":") if re.match(r"^[\w-]+\s*:", body) else body.partition(" ")
        if key.strip(): d[key.strip()] = val.strip()
    return d

def strip_directive_lines(src: str) -> str:
    "A code cell's source without its `#|` lines (what a reader should see)."
    return "\n".join(l for l in src.splitlines() if not _re_dir.match(l)).strip("\n")

def _false(v): return str(v).strip().lower() in ("false", "no", "0")

def front_matter(nb) -> dict:
    "YAML front matter of a raw first cell (`---` ... `---`), if any."
    for c in nb.cells[:1]:
        if c.cell_type == "raw" and c.source.lstrip().startswith("---"):
            import yaml
            try: return yaml.safe_load(c.source.strip().strip("-")) or {}
            except yaml.YAMLError: return {}
    return {}

def read_page(nb_path: Path, root: Path = ROOT) -> Page:
    "A Page with the notebook's title, summary, module and exported names (no execution)."
    try: nb = nbformat.read(nb_path, as_version=4)
    except Exception as e: raise DocsError(f"{nb_path.relative_to(root) if nb_path.is_relative_to(root) else nb_path}: not a readable notebook ({type(e).__name__}: {e})")
    p = Page(nb_path, page_name(nb_path), root=root)
    fm = front_matter(nb)
    p.title, p.summary = str(fm.get("title", "")), str(fm.get("description", ""))
    for c in nb.cells:
        if c.cell_type == "markdown" and not p.title:
            m = re.search(r"^#\s+(.+)$", c.source, re.M)
            if m:
                p.title = m.group(1).strip()
                s = re.search(r"^>\s*(.+)$", c.source, re.M)
                if s and not p.summary: p.summary = s.group(1).strip()
        if c.cell_type == "code":
            d = directives(c.source)
            if "default_exp" in d: p.module = d["default_exp"].split()[0]
            if d.keys() & {"export", "exports"}: p.symbols += [n for n, _ in exported_defs(c.source)]
    p.title = p.title or nb_path.stem
    return p

def exported_defs(src: str) -> list:
    "(name, patched class or None) of the public functions and classes defined at the top level of a cell."
    try: tree = ast.parse(strip_directive_lines(src))
    except SyntaxError: return []
    res = []
    for n in tree.body:
        if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or n.name.startswith("_"): continue
        patched = None
        for dec in getattr(n, "decorator_list", []):
            f = dec.func if isinstance(dec, ast.Call) else dec
            if isinstance(f, ast.Name) and f.id in ("patch", "patch_to") and n.args.args:
                a = n.args.args[0].annotation
                if isinstance(a, ast.Name): patched = a.id
        res.append((f"{patched}.{n.name}" if patched else n.name, patched))
    return res

# --- executing notebooks ----------------------------------------------------------------------------------------------

def skip_flags(root: Path = ROOT) -> set:
    "The cell flags nbdev-test skips (pyproject's [tool.nbdev] tst_flags, e.g. notest slow)."
    return set(str(nbdev_config(root).get("tst_flags", "")).split())

def cell_runs(cell, flags: set) -> bool:
    "Whether the docs build executes this cell: code, not `#| eval: false`, not flagged as skipped by nbdev-test."
    if cell.cell_type != "code" or not cell.source.strip(): return False
    d = directives(cell.source)
    return not (_false(d.get("eval", "true")) or (flags & d.keys()))

def _exec_worker(src: Path, dst: Path, flags: set, cwd: Path):
    "Run in a child process: execute the notebook's cells in an IPython shell in its folder, write the outputs as JSON."
    os.environ["MPLBACKEND"] = "Agg"
    from execnb.shell import CaptureShell
    nb = nbformat.read(src, as_version=4)
    os.chdir(cwd)
    res, err = [], None
    if str(front_matter(nb).get("skip_exec", "false")).lower() == "true": flags = None    # nbdev's skip_exec
    sh = CaptureShell(path=src.parent, mpl_format="retina")
    for i, c in enumerate(nb.cells):
        if err or flags is None or not cell_runs(c, flags): res.append(None); continue
        outs = [dict(o) for o in sh.run(c.source)]
        res.append(outs)
        if sh.exc is not None and directives(c.source).get("error", "false").lower() != "true":
            e = sh.exc
            err = dict(cell=i, ncells=len(nb.cells), ename=type(e).__name__, evalue=str(e).splitlines()[0] if str(e) else "",
                       source=strip_directive_lines(c.source),
                       traceback="".join(l for o in outs if o.get("output_type") == "error" for l in o.get("traceback", [])))
    dst.write_text(json.dumps(dict(outputs=res, error=err), default=str))
    sys.exit(3 if err else 0)

def execute(page: Page, timeout: float, flags: set) -> list:
    "Execute a notebook in a fresh process; its outputs per cell (None: not run). DocsError naming it if a cell fails."
    with tempfile.TemporaryDirectory(prefix="offline_docs_") as td:
        dst = Path(td)/"out.json"
        # nbs/ notebooks run in nbs/ (as nbdev-test runs them); others (the root coron3.ipynb, a papermill report that
        # writes its products relative to its folder) run in a scratch folder, so building the docs leaves no files behind
        cwd = page.src.parent if page.src.parent == page.root/"nbs" else Path(td)/"run"
        cwd.mkdir(exist_ok=True)
        env = dict(os.environ, MPLBACKEND="Agg", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"),
                   OPENBLAS_NUM_THREADS=os.environ.get("OPENBLAS_NUM_THREADS", "1"),
                   MKL_NUM_THREADS=os.environ.get("MKL_NUM_THREADS", "1"), PYTHONUNBUFFERED="1")
        cmd = [sys.executable, str(Path(__file__).resolve()), "--exec-worker", str(page.src), str(dst), "--flags", " ".join(sorted(flags)), "--cwd", str(cwd)]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, text=True)
        try: log, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL); proc.communicate()
            raise DocsError(f"{page.rel}: execution timed out after {timeout:g} s (raise --timeout, or mark slow cells `#| eval: false`)")
        if not dst.exists():
            tail = "\n".join(log.strip().splitlines()[-15:])
            raise DocsError(f"{page.rel}: execution crashed (exit status {proc.returncode})\n{tail}")
        r = json.loads(dst.read_text())
    if r["error"]:
        e = r["error"]
        src = "\n".join("    " + l for l in e["source"].splitlines()[:12])
        tb = "\n".join(_strip_ansi(e["traceback"]).strip().splitlines()[-12:])
        raise DocsError(f"{page.rel}: cell {e['cell'] + 1} (of {e['ncells']}) raised {e['ename']}: {e['evalue']}\n"
                        f"  cell source:\n{src}\n  traceback (end):\n{tb}")
    return r["outputs"]

# --- HTML pieces ------------------------------------------------------------------------------------------------------

_re_ansi = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
def _strip_ansi(s: str) -> str: return _re_ansi.sub("", s)
def esc(s) -> str: return html.escape(str(s), quote=True)
def _text(v) -> str: return "".join(v) if isinstance(v, list) else str(v)

def highlight(code: str, lang: str = "python") -> str:
    "Code as pygments-highlighted HTML (a `div.highlight` with a `pre`)."
    from pygments import highlight as _hl
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import get_lexer_by_name, TextLexer
    from pygments.util import ClassNotFound
    lexer = None
    if lang in ("python", "py", "ipython", "ipython3", ""):
        try:
            from ipython_pygments_lexers import IPython3Lexer
            lexer = IPython3Lexer()
        except ImportError: lang = "python"
    if lexer is None:
        try: lexer = get_lexer_by_name(lang or "text")
        except ClassNotFound: lexer = TextLexer()
    return _hl(code, lexer, HtmlFormatter(wrapcode=True))

_TEX_ALIASES = [(r"\\(le|ge)(?![A-Za-z])", r"\\\1q"), (r"\\[lr]vert(?![A-Za-z])", "|"), (r"\\[lr]Vert(?![A-Za-z])", r"\\|"),
    (r"\\(displaystyle|textstyle|scriptstyle|limits|nolimits|[bB]igg?[lrm]?)(?![A-Za-z])", ""),
    (r"\\operatorname\*", r"\\operatorname"), (r"\\textrm(?![A-Za-z])", r"\\mathrm"), (r"\\[td]frac(?![A-Za-z])", r"\\frac")]

def math_html(tex: str, display: bool) -> str:
    "TeX math as an inline SVG image drawn by matplotlib's mathtext (no MathJax, no network); raw TeX if it cannot."
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import mathtext
    from matplotlib.font_manager import FontProperties
    src = " ".join(tex.split())
    for pat, sub in _TEX_ALIASES: src = re.sub(pat, sub, src)    # LaTeX spellings mathtext does not know
    try:
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            depth = mathtext.math_to_image(f"${src}$", buf, prop=FontProperties(size=15 if display else 12), format="svg")
        svg = buf.getvalue()
        w, h = (float(x) for x in re.search(rb'width="([\d.]+)pt" height="([\d.]+)pt"', svg).groups())
    except Exception:
        return f'<code class="math tex">{esc(tex)}</code>' if not display else f'<pre class="math tex">{esc(tex)}</pre>'
    uri = "data:image/svg+xml;base64," + base64.b64encode(svg).decode()
    img = (f'<img class="math" src="{uri}" alt="{esc(tex)}" style="width:{w:.1f}pt;height:{h:.1f}pt;'
           f'vertical-align:-{float(depth or 0):.1f}pt">')
    return f'<div class="math display">{img}</div>' if display else img

class Markdown:
    "CommonMark + tables + $math$ to HTML; links to notebooks become links to pages, `names` of exported symbols link to their docs."
    def __init__(self, links: dict, pages: dict, pkg: str = ""):
        from markdown_it import MarkdownIt
        from mdit_py_plugins.dollarmath import dollarmath_plugin
        from mdit_py_plugins.anchors import anchors_plugin
        self.links, self.pages = links, pages
        md = MarkdownIt("commonmark", {"html": True, "highlight": lambda code, lang, attrs: highlight(code, lang)})
        md.enable(["table", "strikethrough"])
        md.use(dollarmath_plugin, allow_digits=False, renderer=lambda content, opts: math_html(content, bool(opts.get("display_mode"))))
        md.use(anchors_plugin, min_level=2, max_level=3)
        def link_open(renderer, tokens, idx, options, env):
            t = tokens[idx]
            href = t.attrGet("href") or ""
            m = re.match(r"^(?:\./|\.\./|nbs/|\.\./nbs/)*([\w-]+)\.ipynb(#.*)?$", href)
            if m and m.group(1) + ".ipynb" in self.pages: t.attrSet("href", self.pages[m.group(1) + ".ipynb"] + (m.group(2) or ""))
            return renderer.renderToken(tokens, idx, options, env)
        def code_inline(renderer, tokens, idx, options, env):
            c = tokens[idx].content
            code = f"<code>{esc(c)}</code>"
            nm = re.sub(r"\(.*\)$", "", c.strip())                  # `klip()` -> klip
            if pkg and nm.startswith(pkg + "."): nm = nm.split(".")[-1]  # `coronlit.klip.klip` -> klip
            target = self.links.get(nm)
            return f'<a class="sym" href="{esc(target)}">{code}</a>' if target else code
        md.add_render_rule("link_open", link_open)
        md.add_render_rule("code_inline", code_inline)
        self.md = md

    def inline(self, text: str) -> str:
        "One line of markdown as inline HTML (no paragraph)."
        return self.md.renderInline(text)

    def __call__(self, text: str) -> str:
        "Markdown to HTML (inline code inside an explicit link stays plain code, not a second link)."
        tokens = self.md.parse(text)
        for t in tokens:
            inlink = False
            for ch in (t.children or []) if t.type == "inline" else []:
                if ch.type in ("link_open", "link_close"): inlink = ch.type == "link_open"
                elif ch.type == "code_inline" and inlink: ch.type, ch.content = "html_inline", f"<code>{esc(ch.content)}</code>"
        return self.md.renderer.render(tokens, self.md.options, {})

def render_outputs(outs: list, md) -> str:
    "HTML of one cell's outputs: streams as text, figures as PNG data, HTML/markdown as is, errors as tracebacks."
    parts, stream = [], None
    def flush():
        nonlocal stream
        if stream:   # a progress bar's carriage returns: keep what the terminal would finally show
            text = re.sub(r"[^\n]*\r(?!\n)", "", _strip_ansi(stream[1]).replace("\r\n", "\n")).rstrip()
            parts.append(f'<pre class="stream {stream[0]}">{esc(text)}</pre>')
        stream = None
    for o in outs:
        kind = o.get("output_type")
        if kind == "stream":
            name, text = o.get("name", "stdout"), _text(o.get("text", ""))
            if stream and stream[0] == name: stream = (name, stream[1] + text)
            else: flush(); stream = (name, text)
            continue
        flush()
        if kind == "error":
            parts.append(f'<pre class="error">{esc(_strip_ansi(chr(10).join(o.get("traceback", [])) or o.get("ename", "")))}</pre>')
            continue
        data, meta = o.get("data", {}), o.get("metadata", {})
        for mime in ("image/png", "image/jpeg"):
            if mime in data:
                m = meta.get(mime, meta) if isinstance(meta.get(mime, meta), dict) else {}
                size = "".join(f' {k}="{int(m[k])}"' for k in ("width", "height") if isinstance(m.get(k), (int, float)))
                b64 = _text(data[mime]).replace("\n", "")
                parts.append(f'<figure class="output"><img src="data:{mime};base64,{b64}"{size} alt="figure"></figure>')
                break
        else:
            if "image/svg+xml" in data: parts.append(f'<figure class="output">{_text(data["image/svg+xml"])}</figure>')
            elif "text/html" in data: parts.append(f'<div class="output html">{_text(data["text/html"])}</div>')
            elif "text/markdown" in data: parts.append(f'<div class="output md">{md(_text(data["text/markdown"]))}</div>')
            elif "text/latex" in data: parts.append(f'<div class="output">{math_html(_text(data["text/latex"]).strip("$"), True)}</div>')
            elif "text/plain" in data: parts.append(f'<pre class="result">{esc(_strip_ansi(_text(data["text/plain"])))}</pre>')
    flush()
    return f'<div class="cell-output">{"".join(parts)}</div>' if parts else ""

# --- API docs -------------------------------------------------------------------------------------------------------

def _anno_str(a) -> str:
    "An annotation as its source text would show it (`np.ndarray | None`, not `ForwardRef('np.ndarray')`)."
    if a is inspect.Parameter.empty: return ""
    if isinstance(a, str): return a
    s = getattr(a, "__forward_arg__", None) or inspect.formatannotation(a)
    return re.sub(r"ForwardRef\('([^']*)'\)", r"\1", s).replace("typing.", "").replace("NoneType", "None")

def class_fields(cls) -> list:
    "(name, annotation, default, comment) of the annotated fields of a class body (NamedTuple, dataclass), from its source."
    import tokenize
    try: src = inspect.getsource(cls)
    except (OSError, TypeError): return []
    import textwrap
    src = textwrap.dedent(src)
    comments = {t.start[0]: t.string.lstrip("#").strip() for t in tokenize.generate_tokens(io.StringIO(src).readline)
                if t.type == tokenize.COMMENT}
    try: body = ast.parse(src).body[0].body
    except (SyntaxError, IndexError, AttributeError): return []
    return [(n.target.id, ast.get_source_segment(src, n.annotation) or "",
             ast.get_source_segment(src, n.value) if n.value is not None else "", comments.get(n.end_lineno, ""))
            for n in body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)]

def signature_text(obj, name: str, maxline: int = 90) -> str:
    "`def name(a:int=1, ...)->T` (or `class`), one argument per line when it would be long."
    prefix = "class" if inspect.isclass(obj) else ("async def" if inspect.iscoroutinefunction(obj) else "def")
    try: sig = inspect.signature(obj)
    except (TypeError, ValueError): return f"{prefix} {name}(...)"
    params, star = [], False
    for p in sig.parameters.values():
        if p.name == "self": continue
        if p.kind == p.KEYWORD_ONLY and not star: params.append("*"); star = True
        s = ("*" if p.kind == p.VAR_POSITIONAL else "**" if p.kind == p.VAR_KEYWORD else "") + p.name
        if p.kind == p.VAR_POSITIONAL: star = True
        if p.annotation is not p.empty: s += ":" + _anno_str(p.annotation)
        if p.default is not p.empty:
            d = p.default.__name__ if hasattr(p.default, "__name__") else repr(p.default)
            s += "=" + ("..." if d == "<factory>" else d)
        params.append(s)
    ret = "" if inspect.isclass(obj) or sig.return_annotation is sig.empty else " -> " + _anno_str(sig.return_annotation)
    one = f"{prefix} {name}({', '.join(params)}){ret}"
    if len(one) <= maxline: return one
    return f"{prefix} {name}(\n" + "".join(f"    {p},\n" for p in params) + f"){ret}"

def _inline(md, text: str) -> str:
    "One line of markdown (backticks, emphasis) as inline HTML; escaped text without a renderer."
    return md.inline(text) if md is not None else esc(text)

def param_table(obj, md=None) -> str:
    "The docments table: one row per argument (type, default, the comment after it), and the return value."
    from fastcore.docments import docments
    try: dm = docments(obj, full=True)
    except Exception: return ""
    try: sig = inspect.signature(obj)
    except (TypeError, ValueError): sig = None
    rows = []
    for nm, d in dm.items():
        if nm in ("self", "return"): continue
        p = sig.parameters.get(nm) if sig else None
        anno = _anno_str(p.annotation) if p is not None else _anno_str(d.get("anno", inspect.Parameter.empty))
        dflt = d.get("default", inspect.Parameter.empty)
        dflt = "" if dflt is inspect.Parameter.empty else (dflt.__name__ if hasattr(dflt, "__name__") else repr(dflt))
        if dflt == "<factory>" and is_dataclass(obj):       # a dataclass field(default_factory=...)
            f = {f.name: f for f in fields(obj)}.get(nm)
            if f is not None and f.default_factory is not MISSING: dflt = f"{getattr(f.default_factory, '__name__', 'factory')}()"
        rows.append((nm, anno, dflt, d.get("docment") or ""))
    r = dm.get("return", {})
    if not inspect.isclass(obj) and sig is not None and (sig.return_annotation is not sig.empty or r.get("docment")):
        rows.append(("returns", _anno_str(sig.return_annotation), "", r.get("docment") or ""))
    if inspect.isclass(obj) and not any(row[3] for row in rows):     # e.g. a NamedTuple: comments on its fields
        rows = class_fields(obj)
    if not rows or not any(row[3] for row in rows): return ""
    body = "".join(f'<tr{" class=ret" if i == len(rows) - 1 and nm == "returns" else ""}><td><code>{esc(nm)}</code></td>'
                   f'<td>{f"<code>{esc(a)}</code>" if a else ""}</td><td>{f"<code>{esc(df)}</code>" if df else ""}</td>'
                   f'<td>{_inline(md, doc)}</td></tr>' for i, (nm, a, df, doc) in enumerate(rows))
    return ('<table class="params"><thead><tr><th>Argument</th><th>Type</th><th>Default</th><th>Details</th></tr></thead>'
            f"<tbody>{body}</tbody></table>")

def _members(cls, md=None) -> str:
    "Public methods and properties defined in a class body, with their one-line docstrings."
    rows = []
    for nm, v in vars(cls).items():
        if nm.startswith("_"): continue
        f = v.fget if isinstance(v, property) else v.__func__ if isinstance(v, (staticmethod, classmethod)) else v
        if not callable(f): continue
        kind = "property" if isinstance(v, property) else "method"
        sig = "" if kind == "property" else signature_text(f, nm).removeprefix("def ")
        doc = (inspect.getdoc(f) or "").split("\n\n")[0].replace("\n", " ")
        rows.append(f'<tr><td><code>{esc(sig if sig else nm)}</code></td><td>{kind}</td><td>{_inline(md, doc)}</td></tr>')
    if not rows: return ""
    return f'<table class="members"><thead><tr><th>Member</th><th></th><th>Details</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'

def api_doc(obj, name: str, md=None) -> str:
    "One exported function or class: anchor heading, signature, docstring, docments table, members, folded source."
    doc = inspect.getdoc(obj) or ""
    first, _, rest = doc.partition("\n\n")
    out = [f'<section class="api">',
           f'<h3 class="api-name" id="{esc(name)}"><code>{esc(name)}</code><a class="anchor" href="#{esc(name)}" aria-label="link to {esc(name)}">#</a></h3>',
           f'<div class="signature">{highlight(signature_text(obj, name.split(".")[-1]))}</div>']
    if first: out.append(f'<p class="docstring">{_inline(md, first)}</p>')
    if rest.strip(): out.append(f'<pre class="docstring-more">{esc(rest.strip())}</pre>')
    inherited = inspect.isclass(obj) and not (vars(obj).keys() & {"__init__", "__annotations__"}) and not is_dataclass(obj)
    if not inherited: out.append(param_table(obj, md))   # a subclass with its parent's __init__: the parent's table says it
    if inspect.isclass(obj): out.append(_members(obj, md))
    out.append("</section>")
    return "".join(out)

def _resolve(mod, name: str):
    obj = mod
    for part in name.split("."): obj = getattr(obj, part)
    return obj

def load_module(page: Page):
    "The exported module of a notebook (`coronlit.<default_exp>`); DocsError naming the notebook if it cannot be imported."
    if not page.module: return None
    pkg = Path(nbdev_config(page.root).get("lib_path") or "").name
    if not pkg: return None
    if str(page.root) not in sys.path: sys.path.insert(0, str(page.root))
    try: return importlib.import_module(f"{pkg}.{page.module}")
    except Exception as e:
        raise DocsError(f"{page.rel}: cannot import {pkg}.{page.module} for its API docs ({type(e).__name__}: {e}); run nbdev-export")

def nbdev_config(root: Path = ROOT) -> dict:
    "pyproject.toml's [tool.nbdev] table ({} if there is none)."
    try: return tomllib.loads((root/"pyproject.toml").read_text())["tool"]["nbdev"]
    except (OSError, KeyError, tomllib.TOMLDecodeError): return {}

# --- pages --------------------------------------------------------------------------------------------------------

SOURCE_DIRS = {"export", "exports", "exporti"}     # code shown folded under the API docs
HIDDEN_DIRS = {"hide", "default_exp"}             # neither code nor output shown

def render_body(page: Page, nb, outputs, md, mod) -> str:
    "The article HTML of one notebook: title, prose, code, outputs and API docs in notebook order."
    parts, titled = [], False
    for i, c in enumerate(nb.cells):
        if c.cell_type == "raw": continue
        if c.cell_type == "markdown":
            src = c.source
            if not titled and re.search(r"^#\s+.+$", src, re.M):
                titled = True
                src = re.sub(r"^#\s+.+\n?", "", src, count=1, flags=re.M)
                if page.summary: src = re.sub(r"^>\s*.+\n?", "", src, count=1, flags=re.M)
                parts.append(f'<header class="title"><h1>{md.inline(page.title)}</h1>'
                             + (f'<p class="summary">{md.inline(page.summary)}</p>' if page.summary else "") + "</header>")
            if src.strip(): parts.append(f'<div class="prose">{md(src)}</div>')
            continue
        if c.cell_type != "code" or not c.source.strip(): continue
        d = directives(c.source)
        outs = outputs[i] if outputs and i < len(outputs) and outputs[i] else []
        if d.keys() & HIDDEN_DIRS or _false(d.get("include", "true")): continue
        code = strip_directive_lines(c.source)
        out_html = "" if _false(d.get("output", "true")) else render_outputs(outs, md)
        if d.keys() & SOURCE_DIRS:
            docs = []
            if mod is not None and d.keys() & {"export", "exports"}:
                for nm, _ in exported_defs(c.source):
                    try: obj = _resolve(mod, nm)
                    except AttributeError:
                        raise DocsError(f"{page.rel}: `{nm}` is exported in the notebook but {mod.__name__} has no such name; run nbdev-export")
                    docs.append(api_doc(obj, nm, md))
            label = "internal source" if "exporti" in d else "source"
            if not docs: src_html = highlight(code) if code.strip() else ""     # exported imports, constants: shown as is
            else: src_html = f'<details class="source"><summary>{label}</summary>{highlight(code)}</details>' if code.strip() else ""
            parts.append(f'<div class="cell exported">{"".join(docs)}{src_html}{out_html}</div>')
            continue
        show_code = code.strip() and not _false(d.get("echo", "true"))
        not_run = outputs is not None and outputs[i] is None            # `#| eval: false` or a skipped flag
        attrs = ' class="cell not-run" title="not run when these docs were built"' if not_run else ' class="cell"'
        parts.append(f'<div{attrs}>{highlight(code) if show_code else ""}{out_html}</div>')
    if not titled: parts.insert(0, f'<header class="title"><h1>{esc(page.title)}</h1></header>')
    return "\n".join(parts)

def contents_table(pages: list, md=None) -> str:
    "A table of every page with its summary (appended to the index page)."
    rows = "".join(f'<tr><td><a href="{esc(p.out)}">{esc(p.title)}</a></td><td>{_inline(md, p.summary)}</td></tr>' for p in pages if p.out != "index.html")
    return f'<section class="contents"><h2 id="contents">Contents</h2><table class="pages"><tbody>{rows}</tbody></table></section>' if rows else ""

def page_html(page: Page, pages: list, body: str, project: str) -> str:
    "A whole HTML page: sidebar with every page (this one highlighted), the article, an on-page table of contents."
    nav = "".join(f'<li><a href="{esc(p.out)}"' + (' class="active" aria-current="page"' if p.out == page.out else "")
                  + f'>{esc(p.title)}</a></li>' for p in pages)
    heads = re.findall(r'<h([23])[^>]*\bid="([^"]+)"[^>]*>(.*?)</h\1>', body, re.S)
    toc = "".join(f'<li class="l{lvl}"><a href="#{hid}">{re.sub(r"<[^>]+>", "", t).replace("#", "").strip()}</a></li>' for lvl, hid, t in heads)
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="tools/offline_docs.py">
<title>{esc(page.title)} – {esc(project)}</title>
<link rel="stylesheet" href="style.css">
</head>
<body>
<nav class="sidebar" aria-label="Pages">
<a class="brand" href="index.html">{esc(project)}</a>
<ol class="pages">{nav}</ol>
</nav>
<main>
<article>
{body}
</article>
<footer>Generated from <code>{esc(page.rel)}</code> by <code>tools/offline_docs.py</code>.</footer>
</main>
{f'<aside class="toc" aria-label="On this page"><p>On this page</p><ol>{toc}</ol></aside>' if toc else ""}
</body>
</html>
"""

CSS = """
:root { --fg:#1f2328; --muted:#59636e; --bg:#fff; --side:#f6f8fa; --line:#d1d9e0; --accent:#2c6cb0; --code:#f6f8fa; }
* { box-sizing: border-box; }
html { font-size: 16px; }
body { margin: 0; color: var(--fg); background: var(--bg); line-height: 1.6;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", "DejaVu Sans", Arial, sans-serif; }
a { color: var(--accent); text-decoration: none; } a:hover { text-decoration: underline; }
.sidebar { position: fixed; top: 0; left: 0; bottom: 0; width: 15.5rem; overflow-y: auto; padding: 1.25rem 0.75rem;
  background: var(--side); border-right: 1px solid var(--line); }
.sidebar .brand { display: block; font-weight: 700; font-size: 1.3rem; color: var(--fg); padding: 0 0.6rem 0.8rem; }
.sidebar ol { list-style: none; margin: 0; padding: 0; }
.sidebar li a { display: block; padding: 0.3rem 0.6rem; border-radius: 6px; color: var(--fg); font-size: 0.92rem; line-height: 1.35; }
.sidebar li a:hover { background: #eaeef2; text-decoration: none; }
.sidebar li a.active { background: var(--accent); color: #fff; font-weight: 600; }
main { margin-left: 15.5rem; margin-right: 14rem; padding: 2rem 2.5rem 4rem; max-width: 58rem; }
.toc { position: fixed; top: 0; right: 0; width: 14rem; padding: 2rem 1rem; font-size: 0.83rem; max-height: 100vh; overflow-y: auto; }
.toc p { margin: 0 0 0.4rem; font-weight: 600; color: var(--muted); }
.toc ol { list-style: none; padding: 0; margin: 0; } .toc li { margin: 0.15rem 0; } .toc li.l3 { padding-left: 0.8rem; }
.toc a { color: var(--muted); }
header.title h1 { font-size: 2.1rem; line-height: 1.2; margin: 0 0 0.4rem; }
header.title .summary { font-size: 1.15rem; color: var(--muted); margin: 0 0 1.5rem; padding-bottom: 1rem; border-bottom: 1px solid var(--line); }
h2 { font-size: 1.5rem; margin: 2rem 0 0.6rem; padding-bottom: 0.2rem; border-bottom: 1px solid var(--line); }
h3 { font-size: 1.2rem; margin: 1.6rem 0 0.5rem; }
p, li { max-width: 48rem; }
code { font-family: ui-monospace, "SFMono-Regular", "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 0.88em; }
:not(pre) > code { background: var(--code); padding: 0.1em 0.3em; border-radius: 4px; }
a.sym code { color: var(--accent); }
pre { margin: 0; overflow-x: auto; font-size: 0.85rem; line-height: 1.45; }
.highlight { background: var(--code); border: 1px solid #e1e6eb; border-radius: 6px; margin: 0.8rem 0 0.2rem; }
.highlight pre { padding: 0.7rem 0.9rem; background: transparent; }
.cell { margin: 1rem 0; }
.cell.not-run .highlight { border-left: 3px solid #d4a72c; }
.cell-output { margin: 0.3rem 0 1rem; padding-left: 0.9rem; border-left: 3px solid #e1e6eb; }
.cell-output pre { padding: 0.4rem 0; }
.cell-output pre.stderr { color: #8a4b08; } .cell-output pre.error { color: #b42318; }
figure.output { margin: 0.5rem 0; } figure.output img, figure.output svg { max-width: 100%; height: auto; }
.output.html table, .prose table, table.params, table.members, table.pages { border-collapse: collapse; margin: 0.6rem 0; font-size: 0.9rem; }
.output.html th, .output.html td, .prose th, .prose td, table.params th, table.params td, table.members th, table.members td, table.pages td
  { border: 1px solid var(--line); padding: 0.3rem 0.6rem; text-align: left; vertical-align: top; }
table.params th, table.members th, .prose th { background: var(--side); }
table.params tr.ret td { font-weight: 600; }
section.api { margin: 1.5rem 0 0.5rem; padding: 0.8rem 1rem 0.4rem; border: 1px solid var(--line); border-radius: 8px; }
section.api h3 { margin: 0; font-size: 1.15rem; } section.api h3 code { background: none; padding: 0; font-size: 1.05rem; }
section.api .signature .highlight { margin: 0.5rem 0; }
section.api .docstring { font-style: italic; margin: 0.4rem 0; }
a.anchor { margin-left: 0.5rem; color: var(--line); font-weight: 400; } a.anchor:hover { color: var(--accent); text-decoration: none; }
details.source { margin: 0.4rem 0 0.8rem; } details.source summary { cursor: pointer; color: var(--muted); font-size: 0.85rem; }
blockquote { margin: 1rem 0; padding: 0.1rem 1rem; color: var(--muted); border-left: 4px solid var(--line); }
img.math { display: inline-block; } .math.display { text-align: center; margin: 0.8rem 0; }
footer { margin-top: 3rem; padding-top: 0.8rem; border-top: 1px solid var(--line); color: var(--muted); font-size: 0.8rem; }
@media (max-width: 1200px) { .toc { display: none; } main { margin-right: 0; } }
@media (max-width: 760px) { .sidebar { position: static; width: auto; border-right: 0; border-bottom: 1px solid var(--line); }
  main { margin-left: 0; padding: 1rem; } }
"""

def stylesheet() -> str:
    "The site CSS: the layout above plus pygments' highlighting classes."
    from pygments.formatters import HtmlFormatter
    return CSS + HtmlFormatter(style="default").get_style_defs(".highlight") + "\n.highlight { background: var(--code); }\n"

# --- the build ------------------------------------------------------------------------------------------------------

def sidebar_yaml(nbs_path: Path = ROOT/"nbs") -> str:
    "nbs/sidebar.yml text in nbdev's format (website: sidebar: contents: [...]) listing the notebooks of nbs/."
    import yaml
    from nbdev.quarto import IndentDumper
    names = [p.name for p in find_notebooks(nbs_path.parent) if p.parent == nbs_path]
    return yaml.dump({"website": {"sidebar": {"contents": names}}}, Dumper=IndentDumper, sort_keys=False)

def write_sidebar(nbs_path: Path = ROOT/"nbs") -> Path:
    "Write nbs/sidebar.yml (only if its text changes)."
    p, txt = nbs_path/"sidebar.yml", sidebar_yaml(nbs_path)
    if not p.exists() or p.read_text() != txt: p.write_text(txt)
    return p

def build(out: Path = ROOT/"_docs", exec_: bool = True, only=None, timeout: float = 300, jobs: int = 1,
          root: Path = ROOT, log=print) -> list:
    "Write one HTML page per notebook of `root` (executed unless `exec_` is False) and style.css into `out`; the pages written."
    nb_paths = find_notebooks(root)
    if not nb_paths: raise DocsError(f"{root/'nbs'}: no notebooks to document")
    pages = [read_page(p, root) for p in nb_paths]
    seen = {}
    for p in pages:
        if p.out in seen: raise DocsError(f"{p.rel}: page name {p.out} is also used by {seen[p.out]}")
        seen[p.out] = p.rel
    if only:
        want = {re.sub(r"\.(ipynb|html)$", "", o) for o in only}
        todo = [p for p in pages if {p.src.stem, p.out[:-5]} & want]
        missing = want - {n for p in todo for n in (p.src.stem, p.out[:-5])}
        if missing: raise DocsError(f"--only: no notebook named {', '.join(sorted(missing))} (have: {', '.join(p.out[:-5] for p in pages)})")
    else: todo = pages
    links = {}
    for p in pages:
        for nm in p.symbols: links.setdefault(nm, f"{p.out}#{nm}")
    md = Markdown(links, {p.src.name: p.out for p in pages}, Path(nbdev_config(root).get("lib_path") or "").name)
    out.mkdir(parents=True, exist_ok=True)
    (out/"style.css").write_text(stylesheet())
    if (root/"nbs"/"images").is_dir():   # pictures the prose links to (images/...), as Quarto copies them
        shutil.copytree(root/"nbs"/"images", out/"images", dirs_exist_ok=True)
    project = nbdev_config(root).get("title") or root.name
    flags = skip_flags(root)

    def run(p):
        t0 = time.time()
        outputs = execute(p, timeout, flags) if exec_ else None
        return outputs, time.time() - t0
    failures, written = [], []
    with ThreadPoolExecutor(max(1, jobs)) as ex:
        futs = [(p, ex.submit(run, p)) for p in todo]
        for p, fut in futs:
            try:
                outputs, dt = fut.result()
                nb = nbformat.read(p.src, as_version=4)
                body = render_body(p, nb, outputs, md, load_module(p))
                if p.out == "index.html": body += contents_table(pages, md)
                (out/p.out).write_text(page_html(p, pages, body, project))
                written.append(out/p.out)
                log(f"{p.rel} -> {out/p.out}" + (f" (executed in {dt:.1f} s)" if exec_ else ""))
            except DocsError as e: failures.append(str(e))
    if failures: raise DocsError("\n".join(failures))
    return written

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--readme", action="store_true", help="write README.md from nbs/index.ipynb and stop")
    ap.add_argument("--sidebar", action="store_true", help="write nbs/sidebar.yml (Quarto site sidebar) and stop")
    ap.add_argument("--out", type=Path, default=ROOT/"_docs", help="output folder (default: _docs)")
    ap.add_argument("--no-exec", action="store_true", help="render without executing the notebooks (no outputs)")
    ap.add_argument("--only", action="append", metavar="NAME", help="only this page (e.g. align_refs or 12_align_refs); repeatable")
    ap.add_argument("--timeout", type=float, default=300, help="seconds allowed per notebook (default 300)")
    ap.add_argument("--jobs", "-j", type=int, default=1, help="notebooks executed in parallel (default 1)")
    ap.add_argument("--root", type=Path, default=ROOT, help="project folder with nbs/ (default: this repository)")
    ap.add_argument("--no-sidebar", action="store_true", help="do not (re)write nbs/sidebar.yml during a full build")
    ap.add_argument("--exec-worker", nargs=2, type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--flags", default="", help=argparse.SUPPRESS)
    ap.add_argument("--cwd", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.exec_worker:
        src = a.exec_worker[0].resolve()
        return _exec_worker(src, a.exec_worker[1], set(a.flags.split()), (a.cwd or src.parent).resolve())
    if a.readme: return write_readme()
    if a.sidebar: return print(write_sidebar(a.root.resolve()/"nbs"))
    try:
        t0 = time.time()
        pages = build(a.out.resolve(), exec_=not a.no_exec, only=a.only, timeout=a.timeout, jobs=a.jobs, root=a.root.resolve())
        if not a.only and not a.no_sidebar: write_sidebar(a.root.resolve()/"nbs")
        print(f"offline_docs: {len(pages)} pages in {a.out} ({time.time() - t0:.0f} s); open {a.out/'index.html'}")
    except DocsError as e:
        print(f"offline_docs: build failed:\n{e}", file=sys.stderr)
        sys.exit(1)

if __name__ == "__main__":
    main()
