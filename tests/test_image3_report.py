"""image3.ipynb: its parameters cell is IMAGE3's (one declaration), and papermill runs it end to end on a simulated set."""
import json, subprocess, sys
from pathlib import Path
import nbformat
import pytest

from coronlit.impipeline import IMAGE3

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_parameters_cell_is_the_declaration():
    nb = nbformat.read(ROOT / "image3.ipynb", 4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1
    assert IMAGE3.parameters() in cells[0].source
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")   # committed without outputs


def test_papermill_report(tmp_path):
    pytest.importorskip("papermill")
    r = subprocess.run([str(BIN / "papermill"), str(ROOT / "image3.ipynb"), str(tmp_path / "out.ipynb"), "-p", "output_dir", str(tmp_path / "o"),
                        "-p", "size", "192", "-k", "python3"], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    nb = nbformat.read(tmp_path / "out.ipynb", 4)
    images = sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    assert images >= 4
    names = {p.name for p in (tmp_path / "o" / "products").iterdir()}
    assert names >= {"jw01234-o001_t001_nircam_clear-f444w_cat.ecsv", "jw01234-o001_t001_nircam_clear-f444w_i2d.fits",
                     "jw01234-o001_t001_nircam_clear-f444w_segm.fits"} and sum(n.endswith("_crf.fits") for n in names) == 4
