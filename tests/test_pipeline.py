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
    import shutil                       # the report runs on a copy with a truth.json coronlit did not write beside the ASN:
    shutil.copytree(Path(small).parent, tmp_path / "copy")     # it must not read it (truth is an explicit parameter only)
    (tmp_path / "copy" / "truth.json").write_text(json.dumps({"observer": "not coronlit's", "companion": {"note": "mine"}}))
    r = subprocess.run([str(BIN / "papermill"), str(ROOT / "coron3.ipynb"), str(tmp_path / "out.ipynb"), "-p", "asn", str(tmp_path / "copy" / Path(small).name),
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
    i2d = sorted({Path(l) for l in r.stdout.split() if l.endswith("_i2d.fits")})
    assert len(i2d) == 1 and i2d[0].is_file()
    # it says what it found: the companion beside the truth, the i2d, a quick look, the report command
    said = r.stdout[r.stdout.index("coronlit demo: what it found"):]
    import re
    m = re.search(r'companion: sep ([\d.]+)", PA ([\d.]+) deg, S/N ([\d.]+)\s+\(truth: sep ([\d.]+)", PA ([\d.]+) deg', said)
    assert m, said
    sep, pa, snr, tsep, tpa = map(float, m.groups())
    assert abs(sep - tsep) < 0.05 and abs(pa - tpa) < 3 and snr > 5, said
    assert f"final image: {i2d[0]}" in said and "papermill coron3.ipynb" in said
    png = tmp_path / "products" / "quicklook.png"
    assert f"quick look:  {png}" in said and png.read_bytes()[:4] == b"\x89PNG"
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


@pytest.mark.parametrize("case", ["not_json", "no_members", "missing_member", "nrc_image", "symlink_loop", "no_wcs"])
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
    elif case == "symlink_loop":           # a member that is a link to itself
        (tmp_path / "loop_calints.fits").symlink_to(tmp_path / "loop_calints.fits")
        good["products"][0]["members"][-1]["expname"] = "loop_calints.fits"; asn.write_text(json.dumps(good))
        named = "loop_calints.fits"
    elif case == "no_wcs":                 # a science member without celestial WCS: refused before any product
        import shutil
        for p in Path(small).parent.glob("*.fits"): shutil.copy(p, tmp_path / p.name)
        m = good["products"][0]["members"][1]["expname"]
        with fits.open(tmp_path / m, mode="update") as h:
            import re
            for k in [k for k in h["SCI"].header if re.match(r"(CTYPE|CRVAL|CRPIX|CUNIT|CDELT)\d$|(CD|PC)\d_\d$", k)]:
                del h["SCI"].header[k]
        asn.write_text(json.dumps(good)); named = m
    ins = {p: p.read_bytes() for p in tmp_path.glob("*.fits") if not p.is_symlink()}
    out = tmp_path / "out"
    r = subprocess.run([str(BIN / "coronlit"), "coron3", str(asn), "-o", str(out)], capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = [l for l in r.stderr.splitlines() if l.startswith("coronlit: error:")]
    assert len(lines) == 1 and str(named) in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists() or not any(out.glob("*.fits"))
    assert all(p.read_bytes() == b for p, b in ins.items())        # inputs unchanged


def test_gzipped_member_reduces_like_the_plain_file(small, tmp_path):
    "A member given as .fits.gz (astropy reads it as it is) gives the same products as the plain file."
    import gzip, shutil
    for p in Path(small).parent.glob("*.fits"): shutil.copy(p, tmp_path / p.name)
    good = json.loads(Path(small).read_text())
    m = good["products"][0]["members"][0]["expname"]
    (tmp_path / (m + ".gz")).write_bytes(gzip.compress((tmp_path / m).read_bytes()))
    (tmp_path / m).unlink()                             # only the gzipped member (its PSFMASK beside it is found as before)
    good["products"][0]["members"][0]["expname"] = m + ".gz"
    (tmp_path / "gz_asn.json").write_text(json.dumps(good))
    a = coronlit.coron3(small, tmp_path / "plain", truncate=5, skip=["outlier_detection"], progress=False)
    b = coronlit.coron3(tmp_path / "gz_asn.json", tmp_path / "gz", truncate=5, skip=["outlier_detection"], progress=False)
    assert sorted(p.name for p in (tmp_path / "gz").glob("*.fits")) == sorted(p.name for p in (tmp_path / "plain").glob("*.fits"))
    np.testing.assert_array_equal(a.i2d.sci, b.i2d.sci)
    for k in a.psfsub: np.testing.assert_array_equal(a.psfsub[k].sci, b.psfsub[k + ".gz" if k == m else k].sci)


def test_two_products_each_reduced(small, tmp_path):
    "An ASN with two products: the CLI reduces each into its own folder; the API refuses with a message that says why."
    good = json.loads(Path(small).read_text())
    p0 = good["products"][0]
    second = {"name": p0["name"] + "-b", "members": [p0["members"][1], *[x for x in p0["members"] if x["exptype"] == "psf"]]}
    two = {**good, "products": [p0, second]}
    asn = Path(small).parent / "two_products_asn.json"
    asn.write_text(json.dumps(two))
    try:
        from coronlit.core import AsnError
        with pytest.raises(AsnError, match="2 products .*one coron3 run reduces one product"):
            coronlit.coron3(asn, tmp_path / "api", progress=False)
        assert not (tmp_path / "api").exists()
        r = subprocess.run([str(BIN / "coronlit"), "-q", "coron3", str(asn), "-o", str(tmp_path / "cli"), "--truncate", "5",
                            "--skip", "outlier_detection"], capture_output=True, text=True, env=ENV, timeout=300)
        assert r.returncode == 0, r.stderr
        for prod, nsci in ((p0["name"], 2), (second["name"], 1)):
            d = tmp_path / "cli" / prod
            assert (d / f"{prod}_i2d.fits").is_file() and len(list(d.glob("*_psfsub.fits"))) == nsci, sorted(d.iterdir())
    finally:
        asn.unlink()


def test_pipeline_notebook_is_clean():
    "coron3.ipynb is committed without outputs and with papermill's parameters cell."
    nb = json.loads((ROOT / "coron3.ipynb").read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert sum("parameters" in c.get("metadata", {}).get("tags", []) for c in code) == 1
    assert all(not c.get("outputs") for c in code)
