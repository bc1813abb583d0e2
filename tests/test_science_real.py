"""Real NIRCam data (AU Mic, F356W, MASK335R): the disk in RDI, ADI and RDI+ADI north-up images, and a contrast curve."""
import numpy as np
import pytest
from astropy.table import Table

from coronlit.combine import prepare, reduce
from coronlit.contrast import airy_psf, throughput, contrast_curve, write_curve
from coronlit.metrics import disk_position_angle


@pytest.fixture(scope="module")
def aumic(aumic_asn):
    return prepare(aumic_asn)


@pytest.mark.parametrize("mode,truncate", [("rdi", [3, 6]), ("rdi+adi", [7]), ("adi", [1])])
def test_disk_pa(aumic, mode, truncate):
    "Issue 8: AU Mic's disk at PA 128.6 +/- 1.5 deg (measured: RDI 128.57/128.68, RDI+ADI 7 modes 129.63, ADI 127.79)."
    red = reduce(aumic, mode, truncate)
    assert red.sci.shape[0] == len(truncate)
    for k in truncate:
        pa = disk_position_angle(red.image(k), red.star, 15, 80, wcs=red.wcs)
        print(mode, k, round(pa, 2))
        assert abs(pa - 128.6) <= 1.5, (mode, k, pa)


def test_star_is_crval(aumic):
    "The star in the north-up image is the science WCS reference point (TARG_RA is 10\" off: proper motion)."
    red = reduce(aumic, "rdi", [3])
    ra, dec = aumic.science[0].wcs.wcs.crval
    assert np.allclose(red.star, red.wcs.world_to_pixel_values(ra, dec))
    tr = red.wcs.world_to_pixel_values(aumic.science[0].primary["TARG_RA"], aumic.science[0].primary["TARG_DEC"])
    assert np.hypot(tr[0] - red.star[0], tr[1] - red.star[1]) * 0.063 > 5


def test_contrast_curve(aumic, tmp_path):
    "A throughput-corrected 5-sigma RDI curve on AU Mic (star flux from an F356W magnitude of 4.3): finite beyond 0.6\", falling, ECSV."
    red = reduce(aumic, "rdi", [6])
    F = 280 * 10 ** (-0.4 * 4.3) * 1e-6 / aumic.science[0].header["PIXAR_SR"]
    psf = lambda xy: airy_psf(aumic.science[0].shape, xy, 2.26)
    tp = throughput(aumic, np.arange(0.4, 2.51, 0.3), psf, F, 2.26, truncate=6, n_pa=2, pa0=30.0, base=red)
    assert ((tp["throughput"] > 0.8) & (tp["throughput"] < 1.1)).all(), tp
    im = red.image(6).copy(); y, x = np.indices(im.shape); t = np.radians(128.6)
    im[np.abs((x - red.star[0]) * np.cos(t) + (y - red.star[1]) * np.sin(t)) < 10] = np.nan      # the disk's band
    cc = contrast_curve(im, red.star, 2.26, tp, 0.063)
    ok = cc["sep_arcsec"] > 0.6
    c = np.array(cc["contrast"][ok])
    print(np.round(cc["sep_arcsec"][ok][::4], 2), c[::4])
    assert np.isfinite(c).all() and c[0] > 10 * c[-1] and 1e-7 < c[-1] < 1e-5
    back = Table.read(write_curve(cc, tmp_path / "aumic_rdi.ecsv"), format="ascii.ecsv")
    assert len(back) == len(cc)
