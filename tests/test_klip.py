"""coronlit.klip: agreement with jwst 3.0.0's klip, multi-truncation, NaN-safety, ERR, companion throughput."""
import os
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"): os.environ.setdefault(_v, "1")
import logging, time
import numpy as np
import pytest
from astropy.io import fits
from scipy.ndimage import gaussian_filter

import coronlit.klip as K
from coronlit.klip import klip, klip_subtract, klip_eigenvalues
from coronlit.dq import DO_NOT_USE
from coronlit.products import Exposure, AlignedRefs, write_product

RTOL_JWST = 1e-6   # |coronlit - jwst| <= RTOL_JWST x max|jwst residual| (jwst stores float32 SCI)


def sequence(nints=4, nref=12, shape=(64, 64), nspeck=6, noise=2e-4, seed=0, companion=None):
    "Simulated coronagraphic cubes: smooth PSF + speckle patterns with random amplitudes + white noise."
    rng = np.random.default_rng(seed)
    ny, nx = shape
    y, x = np.mgrid[:ny, :nx] - np.array([(ny - 1) / 2, (nx - 1) / 2])[:, None, None]
    r = np.hypot(x, y)
    psf = np.exp(-0.5 * (r / 3) ** 2) + 0.02 * np.exp(-r / 8)
    speck = np.array([gaussian_filter(rng.normal(size=shape), 1.5) for _ in range(nspeck)]) * 0.06 * np.exp(-r / 12)
    def frames(m):
        a = rng.normal(size=(m, nspeck))
        return ((1 + 0.01 * rng.normal(size=(m, 1, 1))) * psf + np.einsum("mk,kyx->myx", a, speck)
                + noise * rng.normal(size=(m, ny, nx)))
    sci, refs = frames(nints), frames(nref)
    comp = np.zeros_like(sci)
    if companion is not None:
        cx, cy, f = companion
        comp += f * np.exp(-0.5 * ((x - cx) ** 2 + (y - cy) ** 2) / 1.2 ** 2) / (2 * np.pi * 1.2 ** 2)
    return sci + comp, refs, comp


def exposure(sci, err, dq=None, name="jw_test_calints.fits"):
    dq = np.zeros(sci.shape, np.uint32) if dq is None else dq
    return Exposure(sci.astype(np.float32), np.broadcast_to(np.float32(err), sci.shape).astype(np.float32), dq,
                    fits.Header(), fits.Header(), path=name)


def aligned(refs, nints, err, dq=None):
    shape = (nints,) + refs.shape
    return AlignedRefs(np.broadcast_to(refs, shape).astype(np.float32), np.full(shape, err, np.float32),
                       np.zeros(shape, np.uint32) if dq is None else np.broadcast_to(dq, shape).astype(np.uint32),
                       np.zeros(shape[:2] + (3,)), fits.Header(), fits.Header())


def jwst_klip(sci, refs, truncate):
    "jwst 3.0.0's klip on CubeModels built from the same arrays: (SCI, ERR)."
    from stdatamodels.jwst.datamodels import CubeModel
    from jwst.coron.klip import klip as jklip
    target = CubeModel(data=sci.astype(np.float32), err=np.zeros(sci.shape, np.float32), dq=np.zeros(sci.shape, np.uint32))
    psf = CubeModel(data=refs.astype(np.float32))
    out = jklip(target, psf, truncate, return_psf=False)
    return np.array(out.data, np.float64), np.array(out.err, np.float64)


# ---------------------------------------------------------------- agreement with jwst 3.0.0
@pytest.mark.jwst
@pytest.mark.parametrize("truncate", [1, 5, 7, 12, 50])
def test_matches_jwst_speckles(truncate):
    sci, refs, _ = sequence()
    sci, refs = sci.astype(np.float32), refs.astype(np.float32)
    jw, _ = jwst_klip(sci, refs, truncate)
    ours, eig = klip_subtract(sci, refs, truncate, return_eigenvalues=True)
    assert np.abs(ours - jw).max() <= RTOL_JWST * np.abs(jw).max()
    from jwst.coron.klip import karhunen_loeve_transform
    r = refs.reshape(len(refs), -1).astype(np.float64); r -= r.mean(1, keepdims=True)
    jeig = karhunen_loeve_transform(r)[1]
    np.testing.assert_allclose(eig[0], jeig, rtol=1e-8)


@pytest.mark.jwst
def test_matches_jwst_rectangular_noise_and_list():
    "Non-square frames, 25 noise-dominated references, several truncations in one pass vs jwst one by one."
    sci, refs, _ = sequence(nints=3, nref=25, shape=(48, 80), noise=5e-3, seed=7)
    sci, refs = sci.astype(np.float32), refs.astype(np.float32)
    truncs = [2, 6, 10, 24, 25]
    ours = klip_subtract(sci, refs, truncs)
    for k, o in zip(truncs, ours):
        jw, _ = jwst_klip(sci, refs, k)
        assert np.abs(o - jw).max() <= RTOL_JWST * np.abs(jw).max(), k


@pytest.mark.jwst
def test_jwst_err_vanishes_at_full_truncation():
    "The claim in the notebook: jwst's ERR (refs' own residuals, full basis) ~ 0 once truncate >= nref; ours is not."
    sci, refs, _ = sequence(nref=8)
    _, jerr = jwst_klip(sci, refs, 8)
    sub = klip(exposure(sci, 2e-4), aligned(refs, 4, 2e-4), truncate=8)
    assert np.nanmax(jerr) < 1e-3 * np.nanmedian(sub.err)
    assert np.nanmedian(sub.err) >= 2e-4


@pytest.mark.jwst
def test_one_nan_reference_pixel_stays_local_unlike_jwst():
    sci, refs, _ = sequence()
    refs = refs.copy(); refs[3, 20, 40] = np.nan
    try: assert np.isnan(jwst_klip(sci, refs, 7)[0]).all()        # jwst: the whole frame is NaN ...
    except np.linalg.LinAlgError: pass                            # ... or its eigh fails outright (numpy 2.4)
    ours = klip_subtract(sci, refs, 7)
    assert np.isnan(ours).sum() == 4 and np.isnan(ours[:, 20, 40]).all()


# ---------------------------------------------------------------- exactness of the NaN handling and the options
def dense_klip(t, refs, good, k):
    "Textbook KLIP on the `good` pixels only (explicit modes), for comparison."
    r = refs.reshape(len(refs), -1)[:, good].astype(np.float64)
    r -= r.mean(1, keepdims=True)
    lam, v = np.linalg.eigh(np.cov(r))
    z = (v[:, ::-1].T @ r)[:k]
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    tg = t.ravel()[good].astype(np.float64)
    return tg - tg.mean() - z.T @ (z @ tg)


def test_nan_and_flags_equal_explicit_subset():
    sci, refs, _ = sequence(nints=3, seed=2)
    sci = sci.copy(); refs = refs.copy()
    sci[0, 5:8, 9] = np.nan; sci[2, 33, 33] = np.inf
    refs[4, 50, 12] = np.nan
    mask = np.zeros(sci.shape, bool); mask[1, 30:32, 30:32] = True; mask[1, 0, 0] = True
    mask[2, 24:40, 24:40] = True                         # a flagged PSF core: most of the power, Gram recomputed
    rmask = np.zeros(refs.shape, bool); rmask[7, 10, 60] = True
    ours = klip_subtract(sci, refs, [3, 7], mask=mask, ref_mask=rmask)
    refbad = ~np.isfinite(refs).all(0) | rmask.any(0)
    for i in range(3):
        good = (np.isfinite(sci[i]) & ~mask[i] & ~refbad).ravel()
        for j, k in enumerate([3, 7]):
            o = ours[j, i].ravel()
            assert np.isnan(o[~good]).all() and np.isfinite(o[good]).all()
            d = dense_klip(sci[i], refs, good, k)
            assert np.abs(o[good] - d).max() <= 1e-9 * np.abs(d).max()


def test_multi_truncation_equals_single_runs():
    sci, refs, _ = sequence(nints=3, nref=15, seed=3)
    sci[1, 10, 10] = np.nan
    truncs = [0, 1, 4, 7, 15, 40]
    kw = dict(err=np.full_like(sci, 2e-4), ref_err=np.full_like(refs, 2e-4), return_err=True)
    multi, err = klip_subtract(sci, refs, truncs, **kw)
    for k, m, e in zip(truncs, multi, err):
        single, es = klip_subtract(sci, refs, k, **kw)
        np.testing.assert_array_equal(np.isnan(single), np.isnan(m))
        np.testing.assert_allclose(np.nan_to_num(m), np.nan_to_num(single), rtol=0, atol=1e-12)
        np.testing.assert_allclose(np.nan_to_num(e), np.nan_to_num(es), rtol=1e-9, atol=0)
    # truncate = 0: just the mean subtracted
    np.testing.assert_allclose(np.nan_to_num(multi[0][0]), sci[0] - sci[0].mean(), atol=1e-12)


def test_basis_shared_once_or_per_integration(monkeypatch):
    sci, refs, _ = sequence(nints=4, seed=4)
    calls = []
    real = K.prepare_refs
    monkeypatch.setattr(K, "prepare_refs", lambda *a, **k: calls.append(1) or real(*a, **k))
    shared = klip_subtract(sci, refs, 7)
    assert len(calls) == 1
    calls.clear()
    same4 = klip_subtract(sci, np.broadcast_to(refs, (4,) + refs.shape).copy(), 7)   # identical copies: detected
    assert len(calls) == 1
    np.testing.assert_allclose(same4, shared, atol=1e-13)
    calls.clear()
    per = np.stack([refs * (1 + 0.01 * i) for i in range(4)])                          # different sets
    out = klip_subtract(sci, per, 7)
    assert len(calls) == 4
    for i in range(4):
        np.testing.assert_allclose(out[i], klip_subtract(sci[i:i + 1], per[i], 7)[0], atol=1e-13)


def test_fit_region_model_subtracted_everywhere():
    sci, refs, _ = sequence(seed=5)
    y, x = np.mgrid[:64, :64] - 31.5
    ann = (np.hypot(x, y) > 6) & (np.hypot(x, y) < 25)
    art = sci.copy(); art[:, ~ann] += np.random.default_rng(0).normal(size=(4, (~ann).sum()))  # junk outside the region
    a = klip_subtract(art, refs, 7, fit_region=ann)
    b = klip_subtract(sci, refs, 7, fit_region=ann)
    np.testing.assert_allclose(a[:, ann], b[:, ann], atol=1e-12)
    assert np.isfinite(b).all()
    assert np.sqrt(np.mean(b[:, ~ann] ** 2)) < 2e-3           # the star is removed outside the region too


def test_fully_flagged_integration_is_nan_with_warning(caplog):
    sci, refs, _ = sequence(seed=6)
    dq = np.zeros(sci.shape, np.uint32); dq[2] = DO_NOT_USE
    with caplog.at_level(logging.WARNING, logger="coronlit.klip"):
        sub = klip(exposure(sci, 2e-4, dq), aligned(refs, 4, 2e-4), truncate=7)
    assert np.isnan(sub.sci[2]).all() and np.isfinite(sub.sci[[0, 1, 3]]).all()
    assert (sub.dq[2] & DO_NOT_USE).all()
    assert "integration 2 has no usable pixel" in caplog.text


def test_errors_name_the_file():
    from coronlit.core import DataError, InputError
    sci, refs, _ = sequence()
    with pytest.raises(DataError, match="jw_test_calints.fits: aligned references"):
        klip(exposure(sci, 1.0), aligned(refs[:, :32], 4, 1.0))
    with pytest.raises(InputError, match="jw_test_calints.fits: KLIP: truncate"):
        klip(exposure(sci, 1.0), aligned(refs, 4, 1.0), truncate=[5, -2])
    with pytest.raises(DataError, match="jw_test_calints.fits: KLIP: only 0 pixel"):
        klip(exposure(sci, 1.0), aligned(np.full_like(refs, np.nan), 4, 1.0))


# ---------------------------------------------------------------- ERR
def robust_std(z):
    z = z[np.isfinite(z)]
    return 1.4826 * np.median(np.abs(z - np.median(z)))


@pytest.mark.parametrize("truncate", [3, 10, 19])
def test_err_pure_noise(truncate):
    "Pure noise in (sigma = ERR = 1): the residual's scatter equals the ERR, which is ~ the science ERR."
    rng = np.random.default_rng(truncate)
    sci, refs = rng.normal(size=(4, 64, 64)), rng.normal(size=(20, 64, 64))
    sub = klip(exposure(sci, 1.0), aligned(refs, 4, 1.0), truncate=truncate)
    assert abs(np.std(sub.sci / sub.err) - 1) < 0.08
    assert 1.0 <= np.median(sub.err) < 1.08


def test_err_unknown_noise_still_matches_scatter():
    "No ERR given for science nor references (NaN): all noise is measured by the missed-light term instead."
    rng = np.random.default_rng(11)
    sci, refs = rng.normal(size=(4, 64, 64)), rng.normal(size=(20, 64, 64))
    sub = klip(exposure(sci, np.nan), aligned(refs, 4, np.nan), truncate=5)
    assert abs(np.std(sub.sci / sub.err) - 1) < 0.1


@pytest.mark.parametrize("truncate", [1, 3, 7])
def test_err_tracks_residual_speckles(truncate):
    "Simulated speckles: in every annulus the residual rms and the ERR rms agree within 20%."
    sci, refs, _ = sequence(nints=6, nref=16, seed=8)
    sub = klip(exposure(sci, 2e-4), aligned(refs, 6, 2e-4), truncate=truncate)
    r = np.hypot(*(np.mgrid[:64, :64] - 31.5))
    for lo, hi in [(0, 5), (5, 10), (10, 20), (20, 40)]:
        m = (r >= lo) & (r < hi)
        ratio = np.sqrt(np.mean(sub.sci[:, m] ** 2)) / np.sqrt(np.mean(sub.err[:, m] ** 2))
        assert 0.8 < ratio < 1.2, (lo, hi, ratio)


# ---------------------------------------------------------------- coronlit.synth NIRCam data
@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    "A small simulated NIRCam coron3 dataset: 1 science and 2 reference exposures of 4 integrations, 96x96."
    from coronlit.synth import make_dataset, load_truth
    from coronlit.asn import read_asn
    from coronlit.products import read_calints
    asn = make_dataset(tmp_path_factory.mktemp("synth"), n_sci=1, n_ref=2, nints=4, shape=(96, 96), seed=1)
    a = read_asn(asn)
    sci = read_calints(a.science[0].path)
    refs = [read_calints(m.path) for m in a.psf]
    stack = [np.concatenate([getattr(r, f) for r in refs]) for f in ("sci", "err", "dq")]
    al = AlignedRefs(*[x[None] for x in stack], np.zeros((1, len(stack[0]), 3)), refs[0].primary, refs[0].header)
    return sci, al, load_truth(asn.parent)


@pytest.mark.jwst
def test_synth_matches_jwst(synth):
    "Realistic data, bad pixels set to 0 in both inputs (jwst has no NaN handling): same residuals."
    sci, al, _ = synth
    s = np.nan_to_num(sci.sci); r = np.nan_to_num(al.sci[0])
    for k in (3, 8):
        jw, _ = jwst_klip(s, r, k)
        assert np.abs(klip_subtract(s, r, k) - jw).max() <= RTOL_JWST * np.abs(jw).max()


def test_synth_nan_safe_err_and_companion(synth):
    sci, al, truth = synth
    sub = klip(sci, al, truncate=5)
    bad = (sci.dq & DO_NOT_USE).astype(bool) | (al.dq[0] & DO_NOT_USE).astype(bool).any(0) | ~np.isfinite(al.sci[0]).all(0)
    np.testing.assert_array_equal(np.isnan(sub.sci), bad)                 # NaN exactly at the flagged pixels
    assert ((sub.dq & DO_NOT_USE) != 0).sum() == bad.sum()
    y, x = np.mgrid[:96, :96]
    sx, sy = truth["exposures"][0]["star_xy"]
    px, py = truth["companion"]["xy"][sci.name]
    r, rc = np.hypot(x - sx, y - sy), np.hypot(x - px, y - py)
    z = sub.sci / sub.err
    for lo, hi in [(4, 8), (8, 14), (14, 22), (22, 40)]:                  # ERR: robust scatter of residual/ERR
        m = (r >= lo) & (r < hi) & (rc > 5)
        assert 0.8 < robust_std(z[:, m]) < 1.4, (lo, hi, robust_std(z[:, m]))
    assert np.nanstd(sub.sci[:, (r > 6) & (r < 30) & (rc > 5)]) < 0.15 * np.nanstd(sci.sci[:, (r > 6) & (r < 30) & (rc > 5)])
    assert np.nanmean(z[:, rc < 2]) > 4                                     # the companion stands out


# ---------------------------------------------------------------- a companion
def aperture(img, cx, cy, rad=3.0):
    ny, nx = img.shape[-2:]
    y, x = np.mgrid[:ny, :nx] - np.array([(ny - 1) / 2, (nx - 1) / 2])[:, None, None]
    return img[..., np.hypot(x - cx, y - cy) <= rad].sum(-1)


@pytest.mark.parametrize("truncate", [7, 11])
def test_companion_throughput(truncate):
    "KLIP is linear once the basis is fixed: the companion comes out at the throughput of KLIP on it alone."
    sci, refs, comp = sequence(nints=8, nref=12, seed=9, companion=(12, 7, 0.1))
    res = klip_subtract(sci, refs, truncate)
    pred = aperture(klip_subtract(comp, refs, truncate), 12, 7) / aperture(comp, 12, 7)
    meas = aperture(res.mean(0), 12, 7) / aperture(comp[0], 12, 7)
    assert 0.7 < pred[0] < 1.0
    assert abs(meas - pred[0]) < 0.03, (meas, pred[0])
    # and the S/N at the companion is high once the speckles are gone
    assert aperture(res.mean(0), 12, 7) > 10 * np.sqrt(29) * 2.8e-4 / np.sqrt(8)


def test_companion_throughput_drops_with_more_modes():
    "With modes that do resemble the companion (references holding it at other positions), throughput falls as K grows."
    sci, refs, comp = sequence(nints=1, nref=20, nspeck=15, seed=10, companion=(10, -6, 0.1))
    pred = [aperture(klip_subtract(comp, refs, k), 10, -6)[0] / aperture(comp[0], 10, -6) for k in (2, 8, 16, 20)]
    assert all(a >= b - 1e-9 for a, b in zip(pred, pred[1:])), pred
    assert pred[-1] < pred[0]


# ---------------------------------------------------------------- the product
def test_psfsub_product_writes_and_opens_as_cubemodel(tmp_path):
    from stdatamodels.jwst import datamodels
    sci, refs, _ = sequence()
    subs = klip(exposure(sci, 2e-4), aligned(refs, 4, 2e-4), truncate=[3, 7])
    assert [s.header["KLTRUNC"] for s in subs] == [3, 7]
    path = write_product(subs[1], tmp_path / "jw_test_a3001_psfsub.fits")
    with datamodels.open(path) as m:
        assert isinstance(m, datamodels.CubeModel)
        np.testing.assert_allclose(m.data, subs[1].sci)
    with fits.open(path) as h:
        np.testing.assert_allclose(klip_eigenvalues(h["SCI"].header), klip_eigenvalues(subs[1].header))
        assert h["SCI"].header["KLNREF"] == 12


@pytest.mark.jwst
def test_faster_than_jwst():
    "320x320 (NIRCam SUB320), 10 integrations sharing 20 references: coronlit's klip (with its ERR) vs jwst's."
    sci, refs, _ = sequence(nints=10, nref=20, shape=(320, 320), seed=12)
    ex, al = exposure(sci, 2e-4), aligned(refs, 10, 2e-4)
    t0 = time.perf_counter(); jwst_klip(sci, refs, 10); tj = time.perf_counter() - t0
    t0 = time.perf_counter(); klip(ex, al, truncate=10); tc = time.perf_counter() - t0
    assert tc < tj, (tc, tj)      # measured here (busy 2-core machine): ~1.0 s vs ~3.5-4 s
