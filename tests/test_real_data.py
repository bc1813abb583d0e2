"""Read every real AU Mic file (JWST GO 1184, NIRCam F356W, MASK335R) and check real values."""
import json, warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.time import Time

import coronlit
from coronlit.asn import read_asn, product_path
from coronlit.dq import DO_NOT_USE, JUMP_DET, bad_mask
from coronlit.products import read_calints, read_psfmask, read_product, read_provenance, write_product

import realdata
# the real data come through coronlit.datasets (CI points CORONLIT_DATA at its copy); skipped, with the reason, where they cannot be had
DATA, ASN = realdata.folder(), realdata.asn()
pytestmark = realdata.needs()
MEMBERS = json.loads(ASN.read_text())["products"][0]["members"] if ASN else []
# target and roll of each exposure, from the data README
EXPECTED = {"001": ("V-AU-MIC", 63.76), "002": ("V-AU-MIC", 73.77), "003": ("HIP17695", 274.03),
            "004": ("HIP17695", 284.02), "005": ("G-7-34", 265.02), "006": ("G-7-34", 275.01),
            "013": ("2MJ0944", 287.02), "014": ("2MJ0944", 297.02)}


@pytest.fixture(scope="module")
def asn():
    return read_asn(ASN)


def test_asn(asn):
    assert (asn.asn_id, asn.asn_pool) == ("c9999", "coronlit_datasets")
    assert asn.product_name == "jw01184-c9999_t001_nircam_f356w-maskrnd-sub320a335r"
    assert [m.path.name[7:10] for m in asn.science] == ["001", "002"]
    assert [m.path.name[7:10] for m in asn.psf] == ["003", "004", "005", "006", "013", "014"]
    assert all(m.path.is_file() and m.path.is_absolute() for m in asn.members)
    assert product_path(asn, "psfsub", asn.science[1]) == DATA / "jw01184002001_03107_00001_nrcalong_c9999_psfsub.fits"


@pytest.mark.parametrize("member", MEMBERS, ids=lambda m: m["expname"][7:10])
def test_member(member):
    path = DATA / member["expname"]
    e = read_calints(path)
    target, roll = EXPECTED[path.name[7:10]]
    assert (e.nints, e.shape, e.sci.shape) == (1, (320, 320), (1, 320, 320))
    assert (e.sci.dtype, e.err.dtype, e.dq.dtype) == (np.float32, np.float32, np.uint32)  # ERR is f64 on disk
    assert (e.exp_type, e.instrument, e.primary["FILTER"], e.primary["CORONMSK"]) == ("NRC_CORON", "NIRCAM", "F356W", "MASKA335R")
    assert e.primary["TARGPROP"] == target
    assert e.is_psf == (member["exptype"] == "psf")
    assert e.roll == pytest.approx(roll, abs=0.01)
    assert e.var == {}                                     # VAR_* are empty in these files: dropped
    assert e.area.shape == (320, 320) and e.area.dtype == np.float32
    assert e.int_times.dtype.names[0] == "integration_number" and len(e.int_times) in (8, 17)
    assert e.pixel_scale == pytest.approx(0.0625, abs=2e-4)  # NIRCam long-wavelength pixels
    assert "NAXIS3" not in e.header and e.header["CTYPE1"] == "RA---TAN-SIP" and e.wcs.sip is not None
    # the only DO_NOT_USE pixels are the NaN pixels (flagged on read); the raw DQ has none
    nan = ~np.isfinite(e.sci)
    assert 300 < nan.sum() < 340
    assert np.array_equal(bad_mask(e.dq, DO_NOT_USE), nan)
    assert not bad_mask(read_calints(path, flag_nan=False).dq, DO_NOT_USE).any()
    assert 8000 < bad_mask(e.dq, JUMP_DET).sum() < 12000
    # the star: brightest pixel at (x, y) = (150, 174) (145, 165 for the last 2MASS reference)
    y, x = np.unravel_index(np.nanargmax(e.sci[0]), e.shape)
    assert abs(x - 150) <= 6 and abs(y - 174) <= 10


@pytest.mark.parametrize("member", MEMBERS, ids=lambda m: m["expname"][7:10])
def test_wcs_points_at_the_star(member):
    """The WCS at the brightest pixel is the target's position moved by its proper motion to the date (< 1.2")."""
    e = read_calints(DATA / member["expname"])
    p = e.primary
    y, x = np.unravel_index(np.nanargmax(e.sci[0]), e.shape)
    ra, dec = e.wcs.pixel_to_world_values(x, y)
    years = (Time(p["EXPSTART"], format="mjd") - Time("2000-01-01T00:00:00")).to_value("yr")  # MU_EPOCH is J2000
    dec0 = p["TARG_DEC"] + p["MU_DEC"] * years / 3600
    ra0 = p["TARG_RA"] + p["MU_RA"] * years / 3600 / np.cos(np.radians(dec0))
    sep = np.hypot((ra - ra0) * np.cos(np.radians(dec0)), dec - dec0) * 3600
    assert sep < 1.2
    still = np.hypot((ra - p["TARG_RA"]) * np.cos(np.radians(dec0)), dec - p["TARG_DEC"]) * 3600
    if p["TARGPROP"] == "V-AU-MIC": assert still > 5  # AU Mic moved ~10" since 2000: the WCS is not the catalogue spot


@pytest.mark.parametrize("member", MEMBERS[:3], ids=lambda m: m["expname"][7:10])
def test_psfmask(member):
    m = read_psfmask(DATA / member["expname"].replace("_calints.fits", "_calints_psfmask.fits"), shape=(1, 320, 320))
    assert m.shape == (320, 320) and m.dtype == np.float64
    assert 0 <= m.min() < 0.05 and 0.95 < m.max() <= 1.0


def test_real_roundtrip_opens_in_stdatamodels(tmp_path):
    from stdatamodels.jwst import datamodels as dm
    src = DATA / MEMBERS[0]["expname"]
    e = read_calints(src)
    out = write_product(e, tmp_path / "x_c9999_crfints.fits", inputs=[src],
                        provenance=dict(asn=ASN, asn_pool="constructed", inputs=[src], steps={"outlier_detection": "COMPLETE"}))
    back = read_product(out)
    assert read_provenance(out) == dict(version=coronlit.__version__, asn=ASN.name, asn_pool="constructed",
                                        inputs=[src.name], steps={"outlier_detection": "COMPLETE"})
    np.testing.assert_array_equal(back.sci, e.sci)
    np.testing.assert_array_equal(back.dq, e.dq)
    assert back.primary["TARGPROP"] == "V-AU-MIC" and back.roll == pytest.approx(63.757, abs=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with dm.open(out) as m:
            assert type(m).__name__ == "CubeModel"
            np.testing.assert_array_equal(m.data, e.sci)
            assert (m.meta.exposure.type, m.meta.cal_step.outlier_detection) == ("NRC_CORON", "COMPLETE")
            assert (m.meta.asn.pool_name, m.meta.asn.table_name) == ("constructed", ASN.name)
