"""Issue 13's structural promises: the options are declared once (coron3's signature, the CLI, the papermill notebook
and the docs' table all come from `pipeline.CORON3`), the modules import one way (no circles), and no function or
module outgrows what one reader can hold (~60 and ~400 lines)."""
import ast, inspect, json
from pathlib import Path
import pytest
import coronlit
from coronlit.pipeline import CORON3, coron3
from coronlit.cli import build_parser, coron3_options

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "coronlit"


def test_signature_is_the_declaration():
    "coron3's keyword options, in order, with their defaults, are CORON3's."
    ps = inspect.signature(coron3).parameters
    kw = {n: p.default for n, p in ps.items() if p.kind is p.KEYWORD_ONLY}
    assert kw == CORON3.defaults()
    assert list(ps)[:2] == ["asn", "output_dir"]


def test_cli_flags_are_the_declaration():
    "Every option meant for the command line is a flag, in the group of its step, and parses back to its default."
    p = build_parser()
    sub = p._subparsers._group_actions[0].choices["coron3"]
    groups = {a.dest: g.title for g in sub._action_groups for a in g._group_actions}
    for o in CORON3:
        if not o.cli: assert o.name not in groups, o.name; continue
        assert groups[o.name] == (o.step or "options"), o.name
    a = p.parse_args(["coron3", "x.json"] + [x for o in CORON3 if o.cli and o.text_default not in ((), [])
                                             for x in (o.flag, str(o.text_default))])
    assert coron3_options(a) == {o.name: o.default for o in CORON3 if o.cli and o.text_default not in ((), [])}


def test_papermill_cell_holds_the_declaration():
    "coron3.ipynb's parameters cell holds CORON3.parameters() line for line, and reads back to the defaults."
    nb = json.loads((ROOT / "coron3.ipynb").read_text())
    cell = "".join(next(c["source"] for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])))
    for line in CORON3.parameters().splitlines(): assert line in cell, line
    ns = {}; exec(cell, {}, ns)
    assert CORON3.from_parameters(ns) == {o.name: o.default for o in CORON3 if o.cli} | {"skip": []}


def test_docs_table_rows():
    "One row per option in the docs' table, each naming its flag."
    rows = CORON3.markdown().splitlines()[2:]
    assert len(rows) == len(CORON3)
    for o, r in zip(sorted(CORON3, key=lambda o: [x.step for x in CORON3].index(o.step)), rows):
        assert f"`{o.name}`" in r and (o.flag in r if o.cli else "Python only" in r), r


def _imports(path: Path) -> set:
    "The coronlit modules a module imports (at the top or inside functions)."
    mods, deps = {p.stem for p in PKG.glob("*.py")}, set()
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.ImportFrom):
            if n.level == 1 and n.module: deps.add(n.module.split(".")[0])
            elif n.level == 1 or n.module == "coronlit": deps |= {a.name for a in n.names}
            elif n.module and n.module.startswith("coronlit."): deps.add(n.module.split(".")[1])
        elif isinstance(n, ast.Import):
            deps |= {a.name.split(".")[1] for a in n.names if a.name.startswith("coronlit.")}
    return (deps & mods) - {path.stem}


def test_no_import_circles():
    "The graph of `from .x import` edges between coronlit's modules has no cycle."
    graph = {p.stem: _imports(p) for p in PKG.glob("*.py") if p.stem not in ("_modidx", "__init__")}
    state = {}
    def visit(m, path):
        if state.get(m) == 1: raise AssertionError("import circle: " + " -> ".join(path + [m]))
        if state.get(m) == 2: return
        state[m] = 1
        for d in sorted(graph.get(m, ())): visit(d, path + [m])
        state[m] = 2
    for m in sorted(graph): visit(m, [])


def test_the_graph_walker_sees_a_circle(tmp_path):
    "The walker above is not blind: a two-module circle written with both import styles is reported."
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("from .b import x\n"); b.write_text("def f():\n    from coronlit.a import y\n")
    global PKG
    old, PKG = PKG, tmp_path
    try: assert _imports(a) == {"b"} and _imports(b) == {"a"}
    finally: PKG = old


SIZE_EXEMPT = {"synth.py", "_modidx.py"}   # the simulator; nbdev's index


@pytest.mark.parametrize("path", sorted(PKG.glob("*.py")), ids=lambda p: p.name)
def test_small_modules_and_functions(path):
    "No module over ~400 lines (440: ten per cent of slack) and no function over ~60 (the simulator excepted)."
    if path.name in SIZE_EXEMPT: return
    text = path.read_text()
    assert len(text.splitlines()) <= 440, f"{path.name}: {len(text.splitlines())} lines"
    for n in ast.walk(ast.parse(text)):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
            assert n.end_lineno - n.lineno + 1 <= 60, f"{path.name}: {n.name} is {n.end_lineno - n.lineno + 1} lines"


def test_pipeline_page_holds_the_table():
    "The pipeline's docs page shows the option table as CORON3.markdown() writes it today."
    nb = json.loads((ROOT / "nbs" / "20_pipeline.ipynb").read_text())
    text = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    assert CORON3.markdown() in text
