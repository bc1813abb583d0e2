"""The offline docs (the published site is Quarto's: `nbdev-docs`) and the README, from nbdev's processors and nbconvert.

    python tools/docs.py [--only klip] [--out _docs] [--no-exec]   # pages of nbs/sidebar.yml (nbdev's order) into _docs/
    nbdev-test --save && python tools/docs.py --no-exec && nbdev-clean  # the same, from nbdev-test's run (as CI does)
    python tools/docs.py --readme                                   # README.md from nbs/index.ipynb
"""
import re, shutil, sys, time
from functools import partial, reduce
from importlib import import_module
from pathlib import Path
import nbformat, yaml
from fastcore.nbio import read_nb, nb2str, nb_frontmatter
from fastcore.xtras import working_directory
from fastcore.script import call_parse
from execnb.shell import CaptureShell
from nbdev.config import get_config, nbpath2html
from nbdev.process import Processor
from nbdev.processors import FilterDefaults, FrontmatterProc, exec_show_docs, insert_warning, add_links
from nbdev.showdoc import BasicMarkdownRenderer, show_doc as _show_doc
from fastcore.docments import DocmentTbl
from nbdev.quarto import nbdev_sidebar, refresh_quarto_yml
from nbdev.test import _skip_cell
from nbconvert import HTMLExporter, MarkdownExporter

TEMPLATE = Path(__file__).with_name("docs_template")

class TableRenderer(BasicMarkdownRenderer):
    "nbdev's show_doc with the arguments in fastcore's docments table under the signature (as nbdev 2 showed them)."
    def __init__(self, sym, **kw):
        super().__init__(sym, **kw)
        try: self.tbl = DocmentTbl(self.sym)
        except Exception: self.tbl = None
        if self.tbl and self.tbl.has_docment and hasattr(self.dm, "dm"):
            for v in self.dm.dm.values(): v["docment"] = None          # the comments move to the table
    def _repr_markdown_(self):
        md = re.sub(r"\[source\]\((.*?)(#LNone)?\)\{[^}]*\}", r'<a class="source" href="\1">source</a>', super()._repr_markdown_())
        if isinstance(self.sym, type): md = re.sub(r"```python\ndef (.*?)(->None)?:?\n```", r"```python\nclass \1\n```", md, flags=re.S)
        return md + (f"\n\n{self.tbl._repr_markdown_().replace('<', '&lt;')}" if self.tbl and self.tbl.has_docment else "")

def show_doc(sym, mod=None, **kw):
    "nbdev's show_doc with the table, of the exported object (its source, its field comments) if the notebook made `sym`."
    if mod and getattr(sym, "__module__", None) == "__main__":
        try: sym = reduce(getattr, sym.__qualname__.split("."), import_module(mod))
        except (AttributeError, ImportError): pass
    return _show_doc(sym, renderer=TableRenderer, **kw)

class exec_nb(Processor):
    "Run the notebook as nbdev-test does (same skipped cells) and the show_doc cells nbdev added, keeping the outputs."
    timeout, run_all, flags = 300, True, ""
    def begin(self):
        self.k, self.skip = CaptureShell(self.nb.path_), _skip_cell(self.nb, get_config().tst_flags.split(), self.flags.split())
        mod = next((c.directives_["default_exp"] for c in self.nb.cells if "default_exp" in getattr(c, "directives_", {})), None)
        self.k.user_ns["show_doc"] = partial(show_doc, mod=mod and f"{get_config().lib_path.name}.{mod}")
    def __call__(self, cell):
        sd = getattr(cell, "has_sd", False)
        if not (sd or not self.skip(cell) and (self.run_all or cell.directives_.keys() & {"export", "exports", "exporti", "exec_doc"})): return
        if sd or self.run_all: self.k.cell(cell, timeout=self.timeout)
        else: self.k.run(cell.source, timeout=self.timeout)      # no run: the definitions for show_doc; outputs kept
        if self.k.exc and (sd or self.run_all): raise RuntimeError(f"{type(self.k.exc).__name__}: {self.k.exc}\nin the cell:\n{cell.source}")

def quarto_opts(cell):
    "Quarto's cell options (left by nbdev for Quarto) as nbconvert reads them: echo/output/include false."
    if cell.cell_type != "code": return
    cell.metadata.pop("execution", None)                                   # execnb's timing: not nbformat's schema
    opts = dict(re.findall(r"^#\|\s*([\w-]+):\s*(.*?)\s*$", cell.source, re.M))
    cell.source = re.sub(r"^#\|.*\n?", "", cell.source, flags=re.M).strip()
    if opts.get("include") == "false": cell.source = None
    if opts.get("echo") == "false" or not cell.source: cell.metadata.setdefault("transient", {})["remove_source"] = True
    if opts.get("output") == "false": cell.outputs = []

class DocProcs(FilterDefaults):
    "nbdev's doc processors (less `skip`); the notebook run whole (exec) or only its exported cells (for show_doc)."
    def __init__(self, exec_=True, skip=()): self.exec_, self.skip = exec_, skip
    def base_procs(self):
        exec_nb.run_all = self.exec_
        return [exec_nb if p is exec_show_docs else p for p in super().base_procs() if p not in self.skip] + [quarto_opts]

def pages(cfg):
    "{notebook: (page name, title)} in the order of nbs/sidebar.yml, which nbdev's sidebar command writes from nbs/."
    nbdev_sidebar(path=str(cfg.nbs_path), force=True)
    items = yaml.safe_load((cfg.nbs_path/"sidebar.yml").read_text())["website"]["sidebar"]["contents"]
    return {n: (nbpath2html(n).name, nb_frontmatter(read_nb(cfg.nbs_path/n)).get("title", n))
            for n in items if isinstance(n, str) and n.endswith(".ipynb")}

def fix_links(html, cfg, names):
    "Site links made local: nbdev's doclinks (the hosted URL) and links to notebooks; heading ids as Quarto's."
    html = html.replace(f'href="{cfg.doc_host}{cfg.doc_baseurl}/', 'href="')
    html = re.sub(r'href="(?:\./|nbs/)?([\w-]+)\.ipynb', lambda m: f'href="{names[m[1] + ".ipynb"][0]}' if m[1] + ".ipynb" in names else m[0], html)
    return re.sub(r'(<h\d id="|href="[^":#]*#)([^"]+)', lambda m: m[1] + m[2].lower(), html)   # anchors as nbdev's

def fix_anchors(out):
    "A link to a name without a section of its own (a method, a private helper) goes to its class's section or its page."
    ids = {f.name: set(re.findall(r' id="([^"]+)"', f.read_text())) for f in out.glob("*.html")}
    def fix(m): return m[0] if m[2] in ids.get(m[1], {m[2]}) else \
        f'href="{m[1]}' + (f'#{m[2].split(".")[0]}"' if m[2].split(".")[0] in ids[m[1]] else '"')
    for f in out.glob("*.html"): f.write_text(re.sub(r'href="([\w-]+\.html)#([^"]+)"', fix, f.read_text()))

def render(nb_path, out, cfg, names, exec_=True):
    "One page: process and run the notebook, export it with the template; the seconds it took."
    t0, nb, main = time.time(), read_nb(nb_path), sys.modules["__main__"]
    nb.path_ = str(nb_path)
    try:
        with working_directory(nb_path.parent): DocProcs(exec_)(nb)
    finally: sys.modules["__main__"] = main                # IPython's shell takes __main__: the pool's worker needs it back
    fm, nb = nb.frontmatter_, nbformat.reads(nb2str(nb), as_version=4)
    if fm: nb.cells.pop(0)                                  # the front matter cell: the template shows title and summary
    site = dict(pages=list(names.values()), fm=fm, current=names[nb_path.name][0], project=cfg.title,
                src=nb_path.relative_to(cfg.config_path).as_posix())
    ex = HTMLExporter(extra_template_basedirs=[str(TEMPLATE.parent)], template_name=TEMPLATE.name, mathjax_url="mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe",
                      exclude_input_prompt=True, exclude_output_prompt=True)
    html, _ = ex.from_notebook_node(nb, resources=dict(site=site, metadata=dict(name=fm.get("title", nb_path.stem))))
    (out/names[nb_path.name][0]).write_text(fix_links(html, cfg, names))
    return time.time() - t0

def write_readme():
    "README.md from the index notebook with nbdev's processors (no run) and nbconvert's MarkdownExporter."
    cfg = get_config()
    nb = read_nb(cfg.nbs_path/cfg.readme_nb); nb.path_ = str(cfg.nbs_path/cfg.readme_nb)
    with working_directory(cfg.nbs_path): DocProcs(False, skip=(FrontmatterProc, insert_warning, add_links))(nb)  # as written
    md, _ = MarkdownExporter().from_notebook_node(nbformat.reads(nb2str(nb), as_version=4))
    md = re.sub(r"(\]\()(?!https?:|#|/|mailto:)([^)\s]+)", rf"\1{cfg.nbs_path.name}/\2", md)   # links from the root
    (cfg.config_path/"README.md").write_text(f"<!-- generated from {cfg.nbs_path.name}/{cfg.readme_nb} by tools/docs.py --readme; edit the notebook -->\n\n" + md.strip() + "\n")

@call_parse
def main(only:str="",          # only these pages, space-separated (e.g. "klip 12_align_refs")
         out:str=None,         # output folder (default: pyproject's doc_path, _docs)
         no_exec:bool=False,   # do not run the notebooks: the outputs they have (e.g. `nbdev-test --save`), show_doc's
         flags:str="",         # cell flags to run that nbdev-test skips (as `nbdev-test --flags`)
         jobs:int=2,           # notebooks built in parallel
         timeout:int=300,      # seconds allowed per cell
         readme:bool=False):   # write README.md from nbs/index.ipynb instead
    "Write the pages and MathJax into `out`; failures reported by notebook."
    from concurrent.futures import ProcessPoolExecutor
    import jupyter_server_mathjax
    refresh_quarto_yml()                                  # nbs/nbdev.yml from pyproject.toml, as nbdev-docs writes it
    if readme: return write_readme()
    t0, cfg, only, exec_ = time.time(), get_config(), only.split(), not no_exec
    out = Path(out or cfg.doc_path); out.mkdir(parents=True, exist_ok=True)
    names = pages(cfg)
    todo = {cfg.nbs_path/p: n for p, (n, _) in names.items() if not only or {p[:-6], n[:-5]} & set(only)}
    if only and not todo: sys.exit(f"docs: no notebook named {' '.join(only)}")
    shutil.copytree(Path(jupyter_server_mathjax.__file__).parent/"static", out/"mathjax", dirs_exist_ok=True)
    if (cfg.nbs_path/"images").is_dir(): shutil.copytree(cfg.nbs_path/"images", out/"images", dirs_exist_ok=True)
    exec_nb.timeout, exec_nb.flags = timeout, flags
    with ProcessPoolExecutor(jobs) as ex:
        futs = {p: ex.submit(render, p, out, cfg, names, exec_) for p in todo}
        errs = [f"{p.name}: {e}" for p, f in futs.items() if (e := f.exception())]
        for p, f in futs.items(): f.exception() or print(f"{p.name} -> {out/todo[p]} ({f.result():.1f} s)")
    fix_anchors(out)
    if errs: sys.exit("docs: build failed:\n" + "\n".join(errs))
    print(f"docs: {len(todo)} pages in {time.time() - t0:.0f} s")
