"""End to end: the API, the command line and the papermill notebook on simulated and real data."""
import os, subprocess, sys, json
from pathlib import Path
import numpy as np
import pytest
from astropy.io import fits

import coronlit
from coronlit.synth import make_dataset, load_truth
from coronlit.products import read_product
from coronlit.metrics import disk_position_angle, mawet_snr
from coronlit.plots import star_xy

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def _arrays(path):
    "Every data array of a FITS product, by extension name."
    with fits.open(path) as h:
        return {(x.name, x.ver): (np.array(x.data) if x.data is not None else None) for x in h[1:] if x.name != "ASDF"}


def _same_products(a, b):
    "Assert two product folders hold the same files with identical data arrays."
    fa = sorted(p.name for p in Path(a).glob("*.fits")); fb = sorted(p.name for p in Path(b).glob("*.fits"))
    assert fa == fb and fa, (fa, fb)
    for n in fa:
        xa, xb = _arrays(Path(a) / n), _arrays(Path(b) / n)
        assert xa.keys() == xb.keys(), n
        for k in xa:
            if xa[k] is None or xa[k].dtype.names: continue
            np.testing.assert_array_equal(xa[k], xb[k], err_msg=f"{n} {k}")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    d = tmp_path_factory.mktemp("small")
    return make_dataset(d / "data", shape=(128, 128), nints=3, seed=11)


def test_api_cli_notebook_identical(small, tmp_path):
    "The Python API, the CLI and the papermill notebook give identical products on the same input."
    res = coronlit.coron3(small, tmp_path / "api", truncate=12, progress=False)
    assert len(res.paths["psfsub"]) == 2 and res.i2d is not None
    r = subprocess.run([str(BIN / "coronlit"), "-q", "coron3", str(small), "-o", str(tmp_path / "cli"), "--truncate", "12"],
                       capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([str(BIN / "papermill"), str(ROOT / "coron3.ipynb"), str(tmp_path / "out.ipynb"), "-p", "asn", str(small),
                        "-p", "output_dir", str(tmp_path / "nb"), "-p", "truncate", "12", "--cwd", str(tmp_path)],
                       capture_output=True, text=True, env=ENV, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    _same_products(tmp_path / "api", tmp_path / "cli")
    _same_products(tmp_path / "api", tmp_path / "nb")
    nb = json.loads((tmp_path / "out.ipynb").read_text())
    pngs = sum("image/png" in o.get("data", {}) for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", []))
    assert pngs >= 6, f"the executed notebook shows {pngs} figures"


def test_demo_command(tmp_path):
    "`coronlit demo` simulates a dataset, reduces it and detects the companion."
    r = subprocess.run([str(BIN / "coronlit"), "-q", "demo", "-o", str(tmp_path)], capture_output=True, text=True, env=ENV, timeout=600)
    assert r.returncode == 0, r.stderr
    i2d = [Path(l) for l in r.stdout.split() if l.endswith("_i2d.fits")]
    assert len(i2d) == 1 and i2d[0].is_file()
    truth = load_truth(tmp_path / "data")
    img = read_product(i2d[0])
    from astropy.coordinates import SkyCoord
    xy = np.array(img.wcs.world_to_pixel(SkyCoord(truth["companion"]["ra"], truth["companion"]["dec"], unit="deg")), float)
    assert mawet_snr(img.sci, xy, truth["psf_fwhm_pix"], center=star_xy(img.primary, img.wcs)).snr > 5


def test_aumic_end_to_end(aumic_dir, aumic_asn, tmp_path):
    "Real NIRCam data: every product written; the i2d shows AU Mic's disk at PA 128.6 +/- 1.5 deg."
    res = coronlit.coron3(aumic_asn, tmp_path, progress=False)
    n = {k: len(v) for k, v in res.paths.items()}
    assert n == {"crfints": 8, "psfstack": 1, "psfalign": 2, "psfsub": 2, "i2d": 1}, n
    assert res.psfstack.sci.shape == (6, 320, 320)
    assert res.psfalign["jw01184001001_03107_00001_nrcalong_calints.fits"].sci.shape == (1, 6, 320, 320)
    i2d = read_product(res.paths["i2d"][0])
    c = star_xy(i2d.primary, i2d.wcs)
    pa = disk_position_angle(i2d.sci, c, 15, 80, wcs=i2d.wcs)
    assert abs(pa - 128.6) <= 1.5, f"disk PA {pa:.2f} deg"
    # perpendicular to the disk the residual is near zero: the disk is much brighter along its PA
    for k, a in res.psfalign.items():
        assert np.all(np.abs(a.shifts[..., :2]) < 0.1), (k, a.shifts)   # the files come star-aligned by SpaceKLIP
    assert all(p.exists() for p in aumic_dir.iterdir())


@pytest.mark.parametrize("case", ["not_json", "no_members", "missing_member", "nrc_image"])
def test_cli_bad_input(case, tmp_path, small):
    "Bad input: exit 2, one line on stderr naming the file, no traceback, no product."
    asn = tmp_path / "asn.json"
    good = json.loads(Path(small).read_text())
    named = asn
    if case == "not_json": asn.write_text("{ this is not json")
    elif case == "no_members":
        good["products"][0]["members"] = []; asn.write_text(json.dumps(good))
    elif case == "missing_member":
        good["products"][0]["members"][0]["expname"] = "nope_calints.fits"; asn.write_text(json.dumps(good))
        named = "nope_calints.fits"
    elif case == "nrc_image":
        import shutil
        for p in Path(small).parent.glob("*.fits"): shutil.copy(p, tmp_path / p.name)
        m = good["products"][0]["members"][-1]["expname"]
        with fits.open(tmp_path / m, mode="update") as h: h[0].header["EXP_TYPE"] = "NRC_IMAGE"
        asn.write_text(json.dumps(good)); named = m
    out = tmp_path / "out"
    r = subprocess.run([str(BIN / "coronlit"), "coron3", str(asn), "-o", str(out)], capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = [l for l in r.stderr.splitlines() if l.startswith("coronlit: error:")]
    assert len(lines) == 1 and str(named) in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists() or not any(out.glob("*.fits"))


def test_pipeline_notebook_is_clean():
    "coron3.ipynb is committed without outputs and with papermill's parameters cell."
    nb = json.loads((ROOT / "coron3.ipynb").read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert sum("parameters" in c.get("metadata", {}).get("tags", []) for c in code) == 1
    assert all(not c.get("outputs") for c in code)
