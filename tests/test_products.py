"""coronlit.products: reading odd and broken files, round trips, JWST data models, atomic writes."""
import os, warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

import coronlit
import coronlit.products as products
from coronlit.core import DataError, FitsError, OutputError
from coronlit.dq import DO_NOT_USE, OUTLIER, REFERENCE_PIXEL
from coronlit.products import (AlignedRefs, Exposure, Resampled, read_calints, read_product, read_psfmask)
from coronlit.stream import write_product   # every product type (the 4-D one is streamed by coronlit.stream)

SHAPE = (3, 16, 20)  # nints, ny, nx (non-square: catches swapped axes)


def sci_header(shape=SHAPE):
    h = fits.Header()
    h.update(CTYPE1="RA---TAN", CTYPE2="DEC--TAN", CRPIX1=10.5, CRPIX2=8.5, CRVAL1=311.29, CRVAL2=-31.34,
             CUNIT1="deg", CUNIT2="deg", CDELT1=-0.063 / 3600, CDELT2=0.063 / 3600, ROLL_REF=42.0, BUNIT="MJy/sr",
             WCSAXES=2)
    return h


def hdulist(shape=SHAPE, *, sci_shape=None, err_shape=None, err_dtype=np.float32, dq_dtype=np.uint32,
            var=None, extra=True, drop=()):
    """A calints-like HDUList with optional quirks."""
    rng = np.random.default_rng(1)
    sci = rng.normal(10, 1, sci_shape or shape).astype(np.float32)
    err = np.full(err_shape or shape, 0.5, err_dtype)
    dq = np.zeros(shape, dq_dtype)
    prim = fits.PrimaryHDU()
    prim.header.update(TELESCOP="JWST", INSTRUME="NIRCAM", EXP_TYPE="NRC_CORON", IS_PSF=False, DATAMODL="CubeModel",
                       TARGPROP="TOY")
    hdus = [prim, fits.ImageHDU(sci, sci_header(), name="SCI"), fits.ImageHDU(err, name="ERR"),
            fits.ImageHDU(dq, name="DQ")]
    for name, arr in (var or {}).items(): hdus.append(fits.ImageHDU(arr, name=name))
    if extra:
        hdus.append(fits.ImageHDU(np.zeros((2, 1)), name="IMSHIFTS"))
        hdus.append(fits.BinTableHDU.from_columns([fits.Column("ASDF_METADATA", "B", array=np.zeros(4, np.uint8))], name="ASDF"))
    return fits.HDUList([h for h in hdus if h.name not in drop])


def write(hdul, path):
    hdul.writeto(path)
    return path


# ---------------------------------------------------------------- reading: broken files

def test_missing(tmp_path):
    with pytest.raises(FitsError, match=r"nope_calints\.fits: file not found"):
        read_calints(tmp_path / "nope_calints.fits")


def test_folder(tmp_path):
    with pytest.raises(FitsError, match="is a folder"):
        read_calints(tmp_path)


@pytest.mark.parametrize("content", [b"", b"hello, this is not FITS\n" * 10, b"\x00" * 5000])
def test_not_fits(tmp_path, content):
    p = tmp_path / "junk_calints.fits"
    p.write_bytes(content)
    with pytest.raises(FitsError, match=r"junk_calints\.fits: not a readable FITS file"):
        read_calints(p)


@pytest.mark.parametrize("frac", [0.02, 0.3, 0.5, 0.8, 0.97])
def test_truncated(tmp_path, frac):
    full = write(hdulist(extra=False), tmp_path / "full.fits").read_bytes()
    p = tmp_path / "cut_calints.fits"
    p.write_bytes(full[:int(len(full) * frac) // 2880 * 2880 + 100])
    with pytest.raises(FitsError, match=r"cut_calints\.fits: "):
        read_calints(p)


@pytest.mark.parametrize("kw, message", [
    (dict(sci_shape=SHAPE[1:], err_shape=SHAPE[1:]), r"SCI extension is 2-D \(16, 20\), expected 3-D"),
    (dict(sci_shape=(2,) + SHAPE, err_shape=(2,) + SHAPE), r"SCI extension is 4-D \(2, 3, 16, 20\), expected 3-D"),
    (dict(err_shape=(3, 16, 19)), r"ERR has shape \(3, 16, 19\), SCI has \(3, 16, 20\)"),
    (dict(drop=("SCI",)), "no SCI image extension"),
    (dict(drop=("ERR",)), "no ERR extension"),
    (dict(drop=("DQ",)), "no DQ extension"),
    (dict(dq_dtype=np.float32), "DQ extension has non-integer type float32"),
])
def test_unusable(tmp_path, kw, message):
    p = write(hdulist(**kw), tmp_path / "bad_calints.fits")
    with pytest.raises(FitsError, match=r"bad_calints\.fits: " + message):
        read_calints(p)


def test_dq_shape_mismatch(tmp_path):
    h = hdulist()
    h["DQ"].data = np.zeros((3, 8, 8), np.uint32)
    p = write(h, tmp_path / "dq_calints.fits")
    with pytest.raises(FitsError, match=r"dq_calints\.fits: DQ has shape \(3, 8, 8\)"):
        read_calints(p)


# ---------------------------------------------------------------- reading: real-file quirks tolerated

def test_quirks_tolerated(tmp_path):
    var = {"VAR_POISSON": np.full(SHAPE, 2.0, np.float64),            # kept, as float32
           "VAR_RNOISE": np.zeros((1, 16, 20), np.float32),           # wrong shape: dropped
           "VAR_FLAT": None}                                           # empty: dropped
    h = hdulist(var=var, err_dtype=np.float64, dq_dtype=np.int32)
    h["DQ"].data[0, 0, 0] = np.int32(-2**31 + 16)                      # bit 31 + OUTLIER in signed storage
    h["DQ"].data[1, 2, 3] = DO_NOT_USE
    h["SCI"].data[1, 2, 3] = np.nan                                     # NaN at DO_NOT_USE
    p = write(h, tmp_path / "odd_calints.fits")
    e = read_calints(p)
    assert (e.sci.dtype, e.err.dtype, e.dq.dtype) == (np.float32, np.float32, np.uint32)
    assert list(e.var) == ["VAR_POISSON"] and e.var["VAR_POISSON"].dtype == np.float32
    assert e.dq[0, 0, 0] == REFERENCE_PIXEL | OUTLIER
    assert e.dq[1, 2, 3] == DO_NOT_USE and np.isnan(e.sci[1, 2, 3])
    assert (e.dq != 0).sum() == 2                                      # nothing else flagged
    assert e.area is None and e.int_times is None
    assert e.path == p and e.name == "odd_calints.fits"
    assert e.roll == 42.0 and e.pixel_scale == pytest.approx(0.063)


def test_nan_without_dq_is_flagged(tmp_path):
    h = hdulist()
    h["SCI"].data[2, 5, 6] = np.nan
    h["ERR"].data[0, 1, 1] = np.inf
    p = write(h, tmp_path / "nan_calints.fits")
    e = read_calints(p)
    assert sorted(zip(*np.nonzero(e.dq))) == [(0, 1, 1), (2, 5, 6)]
    assert (e.dq[2, 5, 6], e.dq[0, 1, 1]) == (DO_NOT_USE, DO_NOT_USE)
    assert not read_calints(p, flag_nan=False).dq.any()


def test_wcs_from_3axis_sip_header(tmp_path):
    """A stage-2 SCI header: NAXIS=3 but a 2-axis celestial WCS with SIP: the WCS keeps SIP."""
    h = hdulist()
    h["SCI"].header.update(CTYPE1="RA---TAN-SIP", CTYPE2="DEC--TAN-SIP", A_ORDER=2, B_ORDER=2, A_2_0=1e-5, B_0_2=2e-5)
    e = read_calints(write(h, tmp_path / "sip_calints.fits"))
    assert e.wcs.naxis == 2 and e.wcs.sip is not None and e.wcs.sip.a[2, 0] == 1e-5


# ---------------------------------------------------------------- the in-memory model

def test_exposure_checks_shapes():
    z = np.zeros(SHAPE, np.float32)
    with pytest.raises(DataError, match="Exposure.dq has shape"):
        Exposure(z, z, np.zeros((3, 16, 19), np.uint32), fits.Header(), sci_header())
    with pytest.raises(DataError, match="Exposure.sci is 2-D"):
        Exposure(z[0], z[0], z[0].astype(np.uint32), fits.Header(), sci_header())


def test_roll_fallbacks():
    z = np.zeros(SHAPE, np.float32)
    e = Exposure(z, z, z.astype(np.uint32), fits.Header({"PA_V3": 10.0}), fits.Header({"PA_APER": 11.0}))
    assert e.roll == 11.0
    assert e.replace(header=fits.Header()).roll == 10.0
    assert e.replace(header=fits.Header(), primary=fits.Header()).roll is None


# ---------------------------------------------------------------- writing and reading back

def toy_exposure():
    rng = np.random.default_rng(2)
    sci = rng.normal(size=SHAPE).astype(np.float32)
    dq = np.zeros(SHAPE, np.uint32); dq[1, 3, 4] = DO_NOT_USE | OUTLIER; sci[1, 3, 4] = np.nan
    dq[0, 0, 0] = REFERENCE_PIXEL
    prim = fits.Header(dict(TELESCOP="JWST", INSTRUME="NIRCAM", EXP_TYPE="NRC_CORON", TARGPROP="TOY", FILENAME="in_calints.fits"))
    ints = np.zeros(3, dtype=[("integration_number", ">i4")] + [(c, ">f8") for c in products.INT_TIMES_COLUMNS[1:]])
    ints["integration_number"] = [1, 2, 3]; ints["int_mid_MJD_UTC"] = 59855.27 + np.arange(3) * 0.0006
    return Exposure(sci, np.abs(sci) + 0.1, dq, prim, sci_header(),
                    var={"VAR_RNOISE": np.full(SHAPE, 0.25, np.float32)}, area=np.ones(SHAPE[1:], np.float32), int_times=ints)


def toy_aligned():
    rng = np.random.default_rng(3)
    s = (3, 4) + SHAPE[1:]
    shifts = np.stack([rng.normal(size=(3, 4)), rng.normal(size=(3, 4)), 1 + rng.normal(0, .1, (3, 4))], -1)
    return AlignedRefs(rng.normal(size=s).astype(np.float32), np.ones(s, np.float32), np.zeros(s, np.uint32),
                       shifts, fits.Header(dict(INSTRUME="NIRCAM", EXP_TYPE="NRC_CORON")), sci_header())


def toy_resampled(nplanes=None):
    rng = np.random.default_rng(4)
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]; w.wcs.crval = [311.29, -31.34]; w.wcs.crpix = [10.5, 8.5]
    w.wcs.cd = np.array([[-1.75e-5, 0], [0, 1.75e-5]]); w.wcs.cunit = ["deg", "deg"]
    con = rng.integers(0, 16, (nplanes,) + SHAPE[1:] if nplanes else SHAPE[1:]).astype(np.int32)
    hdr = sci_header(); hdr["CRVAL1"] = 0.0   # stale input WCS: replaced by `wcs` on write
    return Resampled(rng.normal(size=SHAPE[1:]).astype(np.float32), np.ones(SHAPE[1:], np.float32),
                     rng.uniform(0, 3, SHAPE[1:]).astype(np.float32), con, w,
                     fits.Header(dict(INSTRUME="NIRCAM", EXP_TYPE="NRC_CORON")), hdr)


PROV = dict(asn="/x/jw1_coron3_asn.json", asn_pool="jw1_pool", inputs=["/d/a_calints.fits", "b_calints.fits"],
            steps={"outlier_detection": "COMPLETE", "stack_refs": "COMPLETE", "align_refs": "COMPLETE",
                   "klip": "COMPLETE", "resample": "SKIPPED"})


def test_exposure_roundtrip(tmp_path):
    e = toy_exposure()
    out = write_product(e, tmp_path / "a_a3001_psfsub.fits", provenance=PROV)
    b = read_product(out)
    assert isinstance(b, Exposure) and b.path == out
    for k in ("sci", "err", "dq", "area"):
        np.testing.assert_array_equal(getattr(b, k), getattr(e, k))
    np.testing.assert_array_equal(b.var["VAR_RNOISE"], e.var["VAR_RNOISE"])
    assert list(b.int_times["integration_number"]) == [1, 2, 3]
    np.testing.assert_array_equal(b.int_times["int_mid_MJD_UTC"], e.int_times["int_mid_MJD_UTC"])
    p = b.primary
    assert (p["DATAMODL"], p["FILENAME"], p["CRL_VER"], p["TARGPROP"]) == ("CubeModel", out.name, coronlit.__version__, "TOY")
    assert (p["ASNTABLE"], p["ASNPOOL"], p["CRLIN001"], p["CRLIN002"]) == ("jw1_coron3_asn.json", "jw1_pool", "a_calints.fits", "b_calints.fits")
    assert [p[k] for k in ("S_OUTLIR", "S_PSFSTK", "S_PSFALI", "S_KLIP", "S_RESAMP")] == ["COMPLETE"] * 4 + ["SKIPPED"]
    assert b.header["ROLL_REF"] == 42.0 and b.wcs.wcs.crval[0] == pytest.approx(311.29)
    with fits.open(out) as h:
        assert [x.name for x in h] == ["PRIMARY", "SCI", "ERR", "DQ", "VAR_RNOISE", "AREA", "INT_TIMES"]
        assert h["ERR"].header["BUNIT"] == "MJy/sr"


def test_foreign_int_times_not_written(tmp_path):
    """An INT_TIMES table without the JWST columns would make stdatamodels refuse the file: it is left out."""
    e = toy_exposure().replace(int_times=np.zeros(3, dtype=[("integration_number", ">i4")]))
    b = read_product(write_product(e, tmp_path / "x.fits"))
    assert b.int_times is None


def test_aligned_roundtrip(tmp_path):
    a = toy_aligned()
    b = read_product(write_product(a, tmp_path / "a_a3001_psfalign.fits"))
    assert isinstance(b, AlignedRefs)
    np.testing.assert_array_equal(b.sci, a.sci)
    np.testing.assert_array_equal(b.shifts, a.shifts)
    assert b.shifts.dtype == np.float64 and b.primary["DATAMODL"] == "QuadModel"


@pytest.mark.parametrize("nplanes", [None, 2])
def test_resampled_roundtrip(tmp_path, nplanes):
    r = toy_resampled(nplanes)
    out = write_product(r, tmp_path / "p_i2d.fits")
    b = read_product(out)
    assert isinstance(b, Resampled)
    for k in ("sci", "err", "wht", "con"):
        np.testing.assert_array_equal(getattr(b, k), getattr(r, k))
    np.testing.assert_allclose(b.wcs.wcs.crval, [311.29, -31.34])
    np.testing.assert_allclose(b.wcs.pixel_to_world_values(3, 4), r.wcs.pixel_to_world_values(3, 4), rtol=0, atol=1e-12)
    assert b.primary["DATAMODL"] == "ImageModel"


def test_stdatamodels_open(tmp_path):
    from stdatamodels.jwst import datamodels as dm
    files = {"CubeModel": write_product(toy_exposure(), tmp_path / "c.fits", provenance=PROV),
             "QuadModel": write_product(toy_aligned(), tmp_path / "q.fits", provenance=PROV),
             "ImageModel": write_product(toy_resampled(), tmp_path / "i.fits", provenance=PROV)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with dm.open(files["CubeModel"]) as m:
            assert type(m) is dm.CubeModel
            np.testing.assert_array_equal(m.data, toy_exposure().sci)
            np.testing.assert_array_equal(m.dq, toy_exposure().dq)
            np.testing.assert_array_equal(m.var_rnoise, toy_exposure().var["VAR_RNOISE"])
            assert (m.meta.cal_step.klip, m.meta.cal_step.outlier_detection, m.meta.asn.pool_name) == ("COMPLETE", "COMPLETE", "jw1_pool")
        with dm.open(files["QuadModel"]) as m:
            assert type(m) is dm.QuadModel
            np.testing.assert_array_equal(m.data, toy_aligned().sci)
            assert m.meta.cal_step.align_psfs == "COMPLETE"
        with dm.open(files["ImageModel"]) as m:
            assert type(m) is dm.ImageModel
            r = toy_resampled()
            np.testing.assert_array_equal(m.data, r.sci)
            np.testing.assert_array_equal(m.wht, r.wht)
            np.testing.assert_array_equal(m.con, r.con)
            assert m.meta.cal_step.resample == "SKIPPED"


def test_psfmask(tmp_path):
    p = tmp_path / "m_psfmask.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.linspace(0, 1, 320).reshape(16, 20), name="SCI")]).writeto(p)
    m = read_psfmask(p, shape=SHAPE)
    assert m.dtype == np.float64 and m.shape == (16, 20) and m[-1, -1] == 1.0
    with pytest.raises(FitsError, match=r"m_psfmask\.fits: PSFMASK has shape \(16, 20\), the data have \(20, 16\)"):
        read_psfmask(p, shape=(20, 16))
    q = tmp_path / "cube_psfmask.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.ones((2, 4, 4)), name="SCI")]).writeto(q)
    with pytest.raises(FitsError, match=r"cube_psfmask\.fits: PSFMASK is 3-D"):
        read_psfmask(q)


def test_read_product_rejects(tmp_path):
    p = tmp_path / "five.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros((1, 1, 2, 2, 2), np.float32), name="SCI")]).writeto(p)
    with pytest.raises(FitsError, match=r"five\.fits: not a coron3 product"):
        read_product(p)


# ---------------------------------------------------------------- where products may (not) go

def test_refuses_inputs(tmp_path):
    src = write(hdulist(), tmp_path / "in_calints.fits")
    before = src.read_bytes()
    e = read_calints(src)
    with pytest.raises(OutputError, match="refusing to overwrite an input file"):
        write_product(e, src)                                  # the file it was read from
    e2 = e.replace(path=None)
    with pytest.raises(OutputError, match="refusing to overwrite an input file"):
        write_product(e2, tmp_path / "." / "in_calints.fits", inputs=[src])
    link = tmp_path / "link.fits"; link.symlink_to(src)
    with pytest.raises(OutputError, match="refusing to overwrite an input file"):
        write_product(e2, link, inputs=[src])                  # resolved: a symlink to an input counts
    assert src.read_bytes() == before


def test_bad_destinations(tmp_path, monkeypatch):
    e = toy_exposure()
    with pytest.raises(OutputError, match=r"nodir: output folder does not exist"):
        write_product(e, tmp_path / "nodir" / "x.fits")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputError, match=r"afile: output folder is a file"):
        write_product(e, tmp_path / "afile" / "x.fits")
    (tmp_path / "adir.fits").mkdir()
    with pytest.raises(OutputError, match="a folder exists under the product's name"):
        write_product(e, tmp_path / "adir.fits")
    monkeypatch.setattr(products.os, "access", lambda *a, **k: False)
    with pytest.raises(OutputError, match="output folder is not writable"):
        write_product(e, tmp_path / "x.fits")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_readonly_folder(tmp_path):
    ro = tmp_path / "ro"; ro.mkdir(); ro.chmod(0o555)
    try:
        with pytest.raises(OutputError, match="not writable"):
            write_product(toy_exposure(), ro / "x.fits")
    finally:
        ro.chmod(0o755)


def test_unknown_step_in_provenance(tmp_path):
    with pytest.raises(OutputError, match="unknown step 'tweakreg'"):
        write_product(toy_exposure(), tmp_path / "x.fits", provenance={"steps": {"tweakreg": "COMPLETE"}})
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- atomicity

def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    """A write that dies after writing part of the file leaves no file under the final name, no temp file."""
    real_writeto = fits.HDUList.writeto

    def half_then_fail(self, fileobj, *a, **k):
        fileobj.write(b"SIMPLE  =                    T" + b" " * 5000)
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(fits.HDUList, "writeto", half_then_fail)
    with pytest.raises(OutputError, match=r"x_psfsub\.fits: cannot write: No space left on device"):
        write_product(toy_exposure(), tmp_path / "x_psfsub.fits")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(fits.HDUList, "writeto", real_writeto)


def test_failed_fsync_keeps_old_product(tmp_path, monkeypatch):
    """An existing product stays intact (old content) when the new write fails before the rename."""
    out = write_product(toy_exposure(), tmp_path / "x_psfsub.fits")
    before = out.read_bytes()

    def no_fsync(fd): raise OSError(5, "Input/output error")
    monkeypatch.setattr(products.os, "fsync", no_fsync)
    with pytest.raises(OutputError, match="Input/output error"):
        write_product(toy_exposure().replace(sci=np.zeros(SHAPE, np.float32)), out)
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["x_psfsub.fits"]


def test_interrupt_cleans_up(tmp_path, monkeypatch):
    """Even a KeyboardInterrupt mid-write removes the temporary file (and is not swallowed)."""
    def interrupted(self, fileobj, *a, **k):
        fileobj.write(b"partial"); raise KeyboardInterrupt
    monkeypatch.setattr(fits.HDUList, "writeto", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_product(toy_exposure(), tmp_path / "x.fits")
    assert list(tmp_path.iterdir()) == []


def test_overwrite_product_replaces(tmp_path):
    out = write_product(toy_exposure(), tmp_path / "x.fits")
    e = toy_exposure().replace(sci=np.full(SHAPE, 7, np.float32))
    write_product(e, out)
    assert (read_product(out).sci == 7).all()
    assert [p.name for p in tmp_path.iterdir()] == ["x.fits"]
    assert oct(out.stat().st_mode & 0o777) == "0o644"
