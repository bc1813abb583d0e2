"""calwebb_image3 end to end on a small simulated set: products named as calwebb_image3.rst names them, readable by
stdatamodels/jwst, inputs unchanged, and bad input answered with exit 2, one line naming the file, and no product."""
import hashlib, json, re, shutil
from pathlib import Path
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from coronlit.cli import main
from coronlit.impipeline import image3, STEPS
from coronlit.imsynth import make_image_set, write_reference_files, read_truth
from coronlit.image3_metrics import alignment_rms, cr_scores, catalog_scores
from coronlit.dq import OUTLIER, DO_NOT_USE

JWST_COLUMNS = ["label", "xcentroid", "ycentroid", "sky_centroid", "aper_bkg_flux", "aper_bkg_flux_err", "aper30_flux", "aper30_flux_err",
                "aper50_flux", "aper70_flux", "aper_total_flux", "aper_total_flux_err", "aper30_abmag", "aper_total_abmag",
                "aper_total_vegamag", "isophotal_flux", "isophotal_flux_err", "isophotal_abmag", "isophotal_vegamag", "isophotal_area",
                "semimajor_sigma", "semiminor_sigma", "ellipticity", "orientation"]


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(folder).iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    "A 3 x 160x160 set reduced once by coronlit.image3."
    d = tmp_path_factory.mktemp("image3")
    asn = make_image_set(d / "data", n_exp=3, shape=(160, 160), seed=21, nstars=50, ngal=6)
    apf, abf = write_reference_files(d / "ref")
    before = _digest(d / "data")
    res = image3(asn, d / "out", apcorr=str(apf), abvegaoffset=str(abf))
    return d, asn, res, before


def test_products_named_as_the_spec(run):
    d, asn, res, _ = run
    names = sorted(p.name for p in (d / "out").iterdir())
    prod = "jw01234-o001_t001_nircam_clear-f444w"
    assert names == sorted([f"jw01234001001_01101_0000{i}_nrcalong_o001_crf.fits" for i in (1, 2, 3)]
                           + [f"{prod}_i2d.fits", f"{prod}_cat.ecsv", f"{prod}_segm.fits"])
    assert [res.steps[s] for s in STEPS] == ["SKIPPED"] + ["COMPLETE"] * 5


def test_inputs_unchanged(run):
    d, _, _, before = run
    assert _digest(d / "data") == before


def test_crf_carries_corrected_wcs_in_both_forms(run):
    "The _crf's gwcs (ASDF) and its SIP header agree to 0.02 pixel, and stdatamodels opens the gwcs as meta.wcs."
    d, asn, res, _ = run
    dm = pytest.importorskip("stdatamodels.jwst.datamodels")
    from astropy.wcs import WCS
    p = res.paths["crf"][1]
    with dm.open(p) as m:
        assert m.meta.wcs is not None and "v2v3corr" in m.meta.wcs.available_frames   # tweakreg's correction frame
        x, y = np.meshgrid(np.linspace(5, 150, 6), np.linspace(5, 150, 6))
        ra, dec = m.meta.wcs(x, y)
        assert m.meta.background.level is not None
    w = WCS(fits.getheader(p, "SCI"))
    xs, ys = w.world_to_pixel_values(ra, dec)
    assert np.hypot(xs - x, ys - y).max() < 0.02


def test_steps_do_their_job(run):
    "Relative alignment to 5 mas, CR recall >= 0.98 with < 0.1% false flags, sky levels within 0.01 MJy/sr."
    d, asn, res, _ = run
    truth = read_truth(asn)
    al = alignment_rms(res.paths["crf"], truth)
    assert al["relative"] < 0.005, al
    cr = cr_scores(res.paths["crf"], truth)
    assert cr["recall"] >= 0.98 and cr["false"] < 0.001 * 3 * 160 * 160, cr
    assert np.allclose(res.sky, [e["sky"] for e in truth["exposures"]], atol=0.01)
    with fits.open(res.paths["crf"][0]) as h:
        assert h[0].header["BKGLEVEL"] == pytest.approx(res.sky[0]) and h[0].header["S_OUTLIR"] == "COMPLETE"
        assert ((h["DQ"].data & OUTLIER) != 0).sum() == res.outliers[res.images[0].name]


def test_catalog_columns_and_meta(run):
    d, asn, res, _ = run
    cat = Table.read(res.paths["cat"][0])
    missing = [c for c in JWST_COLUMNS if c not in cat.colnames]
    assert not missing, missing
    assert cat["aper_total_flux"].unit == "Jy" and cat.meta["abvega_offset"] == pytest.approx(3.2)
    np.testing.assert_allclose(cat["aper_total_abmag"] - cat["aper_total_vegamag"], 3.2, atol=1e-9)
    cs = catalog_scores(res.paths["cat"][0], res.paths["i2d"][0], read_truth(asn))
    assert cs["purity"] >= 0.85 and cs["completeness"] > 0.5 and cs["scatter"] < 0.03, cs
    seg = fits.getdata(res.paths["segm"][0], "SCI")
    assert seg.shape == res.i2d.sci.shape and seg.max() == len(cat)


def test_no_reference_files_no_invented_numbers(run, tmp_path):
    "Without APCORR/ABVEGAOFFSET: no aperture or Vega columns, and the meta says why."
    d, asn, _, _ = run
    r = image3(asn, tmp_path, skip=["tweakreg", "outlier_detection"])
    cat = Table.read(r.paths["cat"][0])
    assert not [c for c in cat.colnames if c.startswith("aper") or "vegamag" in c]
    assert "never invents" in cat.meta["apcorr"] and "never invents" in cat.meta["abvegaoffset"]
    assert r.paths["crf"] == []


# ------------------------------------------------------------------ bad input: exit 2, one line naming the file, no product
def _asn(folder, members, name="bad_asn.json"):
    p = Path(folder) / name
    p.write_text(json.dumps({"asn_type": "image3", "asn_id": "o001", "products": [{"name": "prod", "members": [
        {"expname": m, "exptype": "science"} for m in members]}]}))
    return p


def _bad_cases(src, tmp):
    "name -> (asn path, text the error must contain)."
    files = sorted(p.name for p in src.glob("*_cal.fits"))
    tmp.mkdir(parents=True, exist_ok=True)
    for f in files: shutil.copy(src / f, tmp / f)
    cases = {"missing": (_asn(tmp, files[:1] + ["gone_cal.fits"], "missing.json"), "gone_cal.fits): file not found")}
    with fits.open(tmp / files[0]) as h:
        h[1] = fits.ImageHDU(np.stack([h["SCI"].data] * 2), header=h["SCI"].header.copy(), name="SCI")  # a _calints-like cube
        h.writeto(tmp / "cube_cal.fits", output_verify="silentfix")
    cases["3-D"] = (_asn(tmp, files[1:2] + ["cube_cal.fits"], "cube.json"), "cube_cal.fits: SCI is 3-D")
    with fits.open(tmp / files[0]) as h:
        del h["ASDF"]
        for k in [k for k in h["SCI"].header if re.match(r"(CTYPE|CRVAL|CRPIX|CD\d_|PC\d_|A_|B_|AP_|BP_)", k)]:
            del h["SCI"].header[k]
        h.writeto(tmp / "nowcs_cal.fits")
    cases["no WCS"] = (_asn(tmp, files[1:2] + ["nowcs_cal.fits"], "nowcs.json"), "nowcs_cal.fits: no WCS")
    with fits.open(tmp / files[0]) as h:
        h["DQ"].data[:] = DO_NOT_USE; h.writeto(tmp / "flagged_cal.fits")
    cases["all flagged"] = (_asn(tmp, files[1:2] + ["flagged_cal.fits"], "flagged.json"), "flagged_cal.fits: every pixel")
    with fits.open(tmp / files[0]) as h:
        h[0].header["FILTER"] = "F356W"; h.writeto(tmp / "filter_cal.fits")
    cases["mixed filter"] = (_asn(tmp, files[1:2] + ["filter_cal.fits"], "filter.json"), "filter_cal.fits: FILTER is F356W")
    with fits.open(tmp / files[0]) as h:
        h[0].header["INSTRUME"] = "MIRI"; h.writeto(tmp / "miri_cal.fits")
    cases["mixed instrument"] = (_asn(tmp, files[1:2] + ["miri_cal.fits"], "inst.json"), "miri_cal.fits: INSTRUME is MIRI")
    empty = tmp / "empty.json"; empty.write_text(json.dumps({"products": [{"name": "p", "members": []}]}))
    cases["empty asn"] = (empty, "empty.json: product 'p' has no members")
    return cases


@pytest.mark.parametrize("case", ["missing", "3-D", "no WCS", "all flagged", "mixed filter", "mixed instrument", "empty asn"])
def test_bad_input_exit_2(run, tmp_path, capsys, case):
    d, asn, _, _ = run
    inputs = tmp_path / "in"
    cases = _bad_cases(d / "data", inputs)
    path, text = cases[case]
    before = _digest(inputs)
    code = main(["-q", "image3", str(path), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and text in err[0], err
    assert "Traceback" not in err[0]
    out = tmp_path / "out"
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())   # no product, no temporary file
    assert _digest(inputs) == before


def test_single_cal_and_cli_demo(run, tmp_path, capsys):
    "A single _cal: resample and source_catalog only; `coronlit demo --pipeline image3` writes the products."
    d, asn, _, _ = run
    cal = sorted((d / "data").glob("*_cal.fits"))[0]
    assert main(["-q", "image3", str(cal), "-o", str(tmp_path / "one"), "--npixels", "9"]) == 0
    printed = capsys.readouterr().out.split()
    assert [Path(p).name for p in printed] == ["jw01234001001_01101_00001_nrcalong_i2d.fits", "jw01234001001_01101_00001_nrcalong_cat.ecsv",
                                                "jw01234001001_01101_00001_nrcalong_segm.fits"]
