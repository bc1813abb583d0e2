"""Build a notebook from a percent-format draft (`# %%` code cells, `# %% [markdown]` prose cells).

Usage: python tools/py2nb.py DRAFT.py nbs/NN_name.ipynb

Drafts are a writing aid only: the notebook is the source of truth, so keep drafts out of the repo.
"""
import re, sys
from pathlib import Path
import nbformat

def cells_from_percent(text):
    "Split percent-format `text` into nbformat cells."
    cells, kind, buf = [], None, []
    def flush():
        if kind is None: return
        src = "\n".join(buf).strip("\n")
        if kind == "markdown":
            src = "\n".join(re.sub(r"^# ?", "", l) for l in src.splitlines())
            cells.append(nbformat.v4.new_markdown_cell(src))
        elif src.strip():
            cells.append(nbformat.v4.new_code_cell(src))
    for line in text.splitlines():
        m = re.match(r"^# %%\s*(\[markdown\])?", line)
        if m:
            flush(); kind, buf = ("markdown" if m.group(1) else "code"), []
        else:
            buf.append(line)
    flush()
    return cells

def main(src, dst):
    nb = nbformat.v4.new_notebook()
    nb.cells = cells_from_percent(Path(src).read_text())
    nb.metadata = {"kernelspec": {"display_name": "python3", "language": "python", "name": "python3"}}
    nbformat.write(nb, dst)

if __name__ == "__main__":
    main(*sys.argv[1:3])
