"Heavier checks of coronlit.metrics: the S/N's false-alarm calibration, and the disk PA on real AU Mic data."
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from scipy import stats

from coronlit.core import DataError
from coronlit.metrics import (disk_position_angle, fit_point_source, mawet_snr, radial_noise_profile,
                              separation_pa)

import realdata
AUMIC = realdata.folder()  # through coronlit.datasets; None where the data cannot be had
AUMIC_PA = 128.6  # deg east of north (README: 128.5-128.7)


def gaussian(shape, xy, flux, fwhm):
    s = fwhm / (2 * np.sqrt(2 * np.log(2)))
    y, x = np.mgrid[:shape[0], :shape[1]]
    return flux / (2 * np.pi * s**2) * np.exp(-((x - xy[0])**2 + (y - xy[1])**2) / (2 * s**2))


def test_snr_false_alarm_rate_matches_student_t():
    "In pure white noise, S/N > t_{n-1}^{-1}(1 - 0.05) happens 5% of the time, and the FPF is uniform."
    rng = np.random.default_rng(10)
    star, src, fwhm = (31.5, 31.5), (39.5, 31.5), 4.0  # r = 2 FWHM: 12 apertures, 9 for the noise
    res = [mawet_snr(rng.normal(0, 1, (64, 64)), src, fwhm, star) for _ in range(1500)]
    n = res[0].n
    assert n == 9
    snr = np.array([r.snr for r in res])
    frac = np.mean(snr > stats.t.isf(0.05, n - 1))
    assert abs(frac - 0.05) < 0.02, frac
    fpf = np.array([r.fpf for r in res])
    assert stats.kstest(fpf, "uniform").pvalue > 1e-3
    # a Gaussian-threshold 3-sigma cut would be crossed far more often than 0.135% this close to the star
    assert np.mean(snr > 3) > 3 * stats.norm.sf(3)


def test_snr_scales_with_flux_and_noise():
    "S/N is linear in the source flux and inversely proportional to the noise (same noise pattern)."
    noise = np.random.default_rng(11).normal(0, 1, (96, 96))
    star, src, fwhm = (47.5, 47.5), (47.5, 72.5), 4.0
    a = mawet_snr(noise + gaussian((96, 96), src, 100, fwhm), src, fwhm, star)
    b = mawet_snr(2 * noise + gaussian((96, 96), src, 200, fwhm), src, fwhm, star)
    assert b.snr == pytest.approx(a.snr, rel=1e-9)
    c = mawet_snr(noise + gaussian((96, 96), src, 200, fwhm), src, fwhm, star)
    d = mawet_snr(noise, src, fwhm, star)
    assert c.snr - d.snr == pytest.approx(2 * (a.snr - d.snr), rel=1e-3)  # to the PSF wings in the noise apertures


def test_noise_profile_tracks_radial_noise():
    "Noise falling as 1/r (like speckles) is measured annulus by annulus, and the threshold is factor x std."
    rng = np.random.default_rng(12)
    star, fwhm = (63.5, 63.5), 4.0
    y, x = np.mgrid[:128, :128]
    sigma = 10.0 / np.maximum(np.hypot(x - star[0], y - star[1]), 1.0)
    prof = radial_noise_profile(rng.normal(0, 1, (128, 128)) * sigma, star, fwhm, nsigma=5, r_min=6, step=4)
    np.testing.assert_allclose(prof.std, 10.0 / prof.radius, rtol=0.15)
    np.testing.assert_allclose(prof.threshold, prof.factor * prof.std)
    n = prof.n
    np.testing.assert_allclose(prof.factor, stats.t.isf(stats.norm.sf(5), n - 1) * np.sqrt(1 + 1 / n))


def test_companion_fit_and_sep_pa_roundtrip():
    "A companion injected at 1.0 arcsec, PA 60 deg in a rotated detector frame is measured back."
    scale, roll, star = 0.063, 63.8, (47.5, 47.5)
    ang = np.radians(60 - roll)  # image angle from +y towards -x
    xy = (star[0] - 1.0 / scale * np.sin(ang), star[1] + 1.0 / scale * np.cos(ang))
    im = gaussian((96, 96), xy, 50, 3.0) + np.random.default_rng(13).normal(0, 0.02, (96, 96))
    fp = fit_point_source(im, np.round(xy), 3.0)
    sep, pa = separation_pa((fp.x, fp.y), star, scale, north_angle=roll)
    assert sep == pytest.approx(1.0, abs=0.005)
    assert pa == pytest.approx(60.0, abs=0.3)
    assert fp.flux == pytest.approx(50, rel=0.03)


def test_metrics_errors_are_data_errors():
    with pytest.raises(DataError, match="too close"):
        mawet_snr(np.zeros((32, 32)), (16.0, 15.5), 4.0, (15.5, 15.5))
    with pytest.raises(DataError, match="2-D"):
        radial_noise_profile(np.zeros((2, 8, 8)), (4, 4), 2.0)
    with pytest.raises(DataError, match="finite pixels"):
        fit_point_source(np.full((16, 16), np.nan), (8, 8), 3.0)


def _rdi(n):
    "Classical RDI of one AU Mic roll: science minus the least-squares combination of the six references."
    def load(obs):
        with fits.open(AUMIC / f"jw01184{obs}001_03107_00001_nrcalong_calints.fits") as f:
            return f["SCI"].data[0].astype(float), f["SCI"].header
    refs = np.array([load(o)[0] for o in ("003", "004", "005", "006", "013", "014")])
    sci, hdr = load(n)
    star = (hdr["CRPIX1"] - 1, hdr["CRPIX2"] - 1)  # the star sits at the reference pixel (SpaceKLIP-aligned)
    y, x = np.mgrid[:sci.shape[0], :sci.shape[1]]
    fit = (np.hypot(x - star[0], y - star[1]) > 8) & (np.hypot(x - star[0], y - star[1]) < 30)
    fit &= np.isfinite(sci) & np.all(np.isfinite(refs), axis=0)
    c, *_ = np.linalg.lstsq(refs[:, fit].T, sci[fit], rcond=None)
    return sci - np.tensordot(c, refs, 1), hdr, star


@realdata.needs()
@pytest.mark.parametrize("obs", ["001", "002"])
def test_aumic_disk_position_angle(obs):
    "Real data: AU Mic's edge-on disk comes out at PA 128.6 +/- 1.5 deg in both rolls, via WCS and via PA_APER."
    sub, hdr, star = _rdi(obs)
    pa_wcs = disk_position_angle(sub, star, 15, 70, wcs=WCS(hdr, naxis=2))
    pa_roll = disk_position_angle(sub, star, 15, 70, north_angle=hdr["PA_APER"])
    assert pa_wcs == pytest.approx(AUMIC_PA, abs=1.5)
    assert pa_roll == pytest.approx(AUMIC_PA, abs=1.5)
    assert pa_wcs == pytest.approx(pa_roll, abs=0.5)
