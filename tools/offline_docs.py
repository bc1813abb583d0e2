"""Offline documentation build (Quarto cannot be installed here) and README generation.

    python tools/offline_docs.py --readme    # write README.md from nbs/index.ipynb
"""
import argparse, re
from pathlib import Path
import nbformat

ROOT = Path(__file__).resolve().parents[1]

def _strip_directives(src):
    "Drop `#| ...` directive lines from a code cell."
    return "\n".join(l for l in src.splitlines() if not l.startswith("#|")).strip()

def readme_text(nb_path=ROOT/"nbs"/"index.ipynb"):
    "README markdown from the index notebook: prose as is, the title's summary as a quote, code as code blocks."
    nb = nbformat.read(nb_path, as_version=4)
    parts = []
    for c in nb.cells:
        if c.cell_type == "markdown": parts.append(c.source.strip())
        elif c.cell_type == "code":
            src = _strip_directives(c.source)
            if src and "hide" not in c.source.split("\n", 1)[0]: parts.append(f"```python\n{src}\n```")
    return "<!-- generated from nbs/index.ipynb by tools/offline_docs.py --readme; edit the notebook -->\n\n" + "\n\n".join(parts) + "\n"

def write_readme():
    (ROOT/"README.md").write_text(readme_text())

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--readme", action="store_true", help="write README.md from nbs/index.ipynb and stop")
    a = ap.parse_args()
    if a.readme: write_readme()
