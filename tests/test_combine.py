"""coronlit.combine on simulated data: RDI / ADI / RDI+ADI north-up images, roll means derotated once (same image as
drizzling every integration, and faster), one plane per truncation."""
import time
import numpy as np
import pytest
from astropy.coordinates import SkyCoord

from coronlit.synth import make_dataset, load_truth
from coronlit.products import read_calints
from coronlit.combine import prepare, reduce, roll_mean, derotate, MODES
from coronlit.metrics import mawet_snr, fit_point_source
from coronlit.core import DataError

# jwst 3.0.0's i2d companion S/N on this dataset, measured once (bench/jwst_coron3.py) with the noise apertures on
# the circle around the STAR (its CRVAL). tests/test_vs_jwst.py's 15.7 (and coronlit's 40.5) put them around the
# image centre, i.e. at the wrong separation: with the star as centre coronlit's coron3 i2d gives 13.3.
JWST_SNR = 8.55


@pytest.fixture(scope="module")
def vs_jwst(tmp_path_factory):
    "The dataset of tests/test_vs_jwst.py: 160x160, 4 integrations, a 2e-5 companion at 1 arcsec, PA 60."
    d = tmp_path_factory.mktemp("combine")
    asn = make_dataset(d / "data", shape=(160, 160), nints=4, seed=7, companion=dict(sep=1.0, pa=60, contrast=2e-5))
    return prepare(asn), load_truth(d / "data"), d / "data"


def _snr(red, truth, k=None):
    c = truth["companion"]
    xy = red.wcs.world_to_pixel_values(c["ra"], c["dec"])
    return mawet_snr(red.image(k), xy, truth["psf_fwhm_pix"], center=red.star).snr, xy


def test_modes_beat_jwst(vs_jwst):
    "Issue 8: the i2d companion S/N is at least 1.2x jwst 3.0.0's (8.55) in RDI and RDI+ADI (ADI: > 5, self-subtraction at 1.2 FWHM of roll arc); position within 0.1 px."
    p, truth, _ = vs_jwst
    out = {}
    for m in MODES:
        red = reduce(p, m, truncate=[5, 50])
        assert red.sci.shape[0] == 2 and len(red.i2d) == 2
        assert all(len(v) == 2 for v in red.psfsub.values())      # a psfsub per truncation and roll
        s, xy = _snr(red, truth)
        f = fit_point_source(red.image(), (float(xy[0]), float(xy[1])), truth["psf_fwhm_pix"])
        out[m] = (round(s, 1), round(float(np.hypot(f.x - xy[0], f.y - xy[1])), 3))
    print(out)
    for m, (s, d) in out.items():
        assert s >= (1.2 * JWST_SNR if m != "adi" else 5), out
        assert d < 0.1, out


def test_roll_mean_equals_per_frame_drizzle(tmp_path):
    "Averaging a roll's integrations (drizzle weights) then rotating once = rotating each integration, to 1e-4 of the peak; >= 2x faster with 8 integrations per roll."
    asn = make_dataset(tmp_path, shape=(128, 128), nints=8, seed=1, companion=None)
    sci = [read_calints(m) for m in sorted(tmp_path.glob("jw0999900[12]*_calints.fits"))]
    t_all, t_one = [], []
    for _ in range(3):
        t0 = time.process_time(); a = derotate(sci); t1 = time.process_time()     # CPU time: other jobs on the machine do not count
        b = derotate([roll_mean(e) for e in sci]); t2 = time.process_time()
        t_all.append(t1 - t0); t_one.append(t2 - t1)
    ok = np.isfinite(a.sci) & np.isfinite(b.sci)
    assert ok.sum() >= 0.99 * np.isfinite(a.sci).sum()
    peak = np.nanmax(np.abs(a.sci))
    assert np.max(np.abs(a.sci[ok] - b.sci[ok])) < 1e-4 * peak
    assert np.max(np.abs(a.wht[ok] - b.wht[ok])) < 1e-4 * a.wht.max()
    print("per-frame %.3f s, roll means %.3f s" % (min(t_all), min(t_one)))
    assert min(t_all) > 2 * min(t_one), (t_all, t_one)           # measured 2.5x (16 drizzles vs 2, plus fixed costs)


def test_one_roll_has_no_adi(tmp_path):
    "ADI with a single science roll is a DataError naming the file; RDI works."
    asn = make_dataset(tmp_path, shape=(64, 64), n_sci=1, nints=2, seed=2, companion=None)
    p = prepare(asn)
    assert reduce(p, "rdi", 3).sci.shape == (1,) + reduce(p, "rdi", 3).sci.shape[1:]
    with pytest.raises(DataError, match="two science rolls"):
        reduce(p, "adi", 3)
