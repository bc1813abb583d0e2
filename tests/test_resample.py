"""coronlit.resample on synthetic rolls: astrometry, photometry, orientation, masking, errors, speed."""
import time
import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from drizzle.utils import decode_context

import coronlit.resample as rs
from coronlit.core import DataError, InputError
from coronlit.dq import DO_NOT_USE, NON_SCIENCE, OUTLIER
from coronlit.products import Exposure, Resampled

RA0, DEC0, SCALE = 311.2897, -31.3409, 0.063          # AU Mic, NIRCam LW pixel scale (arcsec)


def make_wcs(pa, shape=(96, 96), scale=SCALE, crval=(RA0, DEC0), sip=True, parity=-1):
    "FITS header of a TAN(-SIP) WCS whose +y axis is at position angle `pa` (deg E of N), centred on `crval`."
    t, s = np.deg2rad(pa), scale / 3600
    sfx = "-SIP" if sip else ""
    h = fits.Header({"CTYPE1": "RA---TAN" + sfx, "CTYPE2": "DEC--TAN" + sfx,
                     "CRPIX1": (shape[1] + 1) / 2, "CRPIX2": (shape[0] + 1) / 2, "CRVAL1": crval[0], "CRVAL2": crval[1],
                     "CD1_1": s * parity * np.cos(t), "CD1_2": s * np.sin(t),
                     "CD2_1": -s * parity * np.sin(t), "CD2_2": s * np.cos(t), "BUNIT": "MJy/sr"})
    if sip:
        h.update({"A_ORDER": 2, "B_ORDER": 2, "A_2_0": 3e-6, "A_1_1": -2e-6, "A_0_2": 2e-6,
                  "B_2_0": -1e-6, "B_1_1": 3e-6, "B_0_2": 1e-6})
    return h


def offset(east, north):
    "RA/Dec (deg) of a point `east`, `north` arcsec from (RA0, DEC0) (gnomonic, exact enough at arcsec scale)."
    return RA0 + east / 3600 / np.cos(np.deg2rad(DEC0)), DEC0 + north / 3600


def gaussian(shape, x0, y0, flux, sigma=1.3):
    yy, xx = np.indices(shape, float)
    return flux * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * sigma ** 2)) / (2 * np.pi * sigma ** 2)


def roll(pa, sources=(), nints=3, noise=0.0, shape=(96, 96), seed=0, name=None, **kw):
    "A psfsub Exposure at position angle `pa` with Gaussian point sources [(ra, dec, flux), ...]."
    hdr = make_wcs(pa, shape, **kw)
    w = WCS(hdr, naxis=2)
    img = np.zeros(shape)
    for ra, dec, flux in sources:
        img += gaussian(shape, *w.world_to_pixel_values(ra, dec), flux)
    rng = np.random.default_rng(seed)
    sci = (img + noise * rng.standard_normal((nints,) + shape)).astype(np.float32)
    return Exposure(sci=sci, err=np.full(sci.shape, max(noise, 1.0), np.float32), dq=np.zeros(sci.shape, np.uint32),
                    primary=fits.Header({"EXP_TYPE": "NRC_CORON", "EFFINTTM": 10.0, "TARGPROP": "AU-MIC"}),
                    header=hdr, path=name)


def centroid(img, x, y, r=6):
    xi, yi = int(round(x)), int(round(y))
    cut = img[yi - r:yi + r + 1, xi - r:xi + r + 1].astype(float)
    yy, xx = np.indices(cut.shape)
    return (cut * xx).sum() / cut.sum() + xi - r, (cut * yy).sum() / cut.sum() + yi - r


SRC = offset(-1.1, 0.7) + (1000.0,)   # 1.1" west, 0.7" north


@pytest.mark.parametrize("north_up", [True, False])
def test_point_source_lands_where_the_output_wcs_says(north_up):
    rolls = [roll(57.0, [SRC]), roll(67.3, [SRC])]
    out = rs.resample(rolls, north_up=north_up)
    assert isinstance(out, Resampled)
    x, y = map(float, out.wcs.world_to_pixel_values(SRC[0], SRC[1]))
    np.testing.assert_allclose(centroid(out.sci, x, y), (x, y), atol=0.05)
    for r in rolls:                                    # each roll alone puts it on the same output pixel
        one = rs.resample([r], north_up=north_up)
        # the single-roll grid differs: compare sky positions through each output's own WCS
        xc, yc = centroid(one.sci, *map(float, one.wcs.world_to_pixel_values(SRC[0], SRC[1])))
        ra, dec = one.wcs.pixel_to_world_values(xc, yc)
        np.testing.assert_allclose(out.wcs.world_to_pixel_values(ra, dec), (x, y), atol=0.05)
    np.testing.assert_allclose(np.nansum(out.sci), 1000.0, rtol=0.01)       # flux (same pixel scale)


def test_each_roll_drizzled_alone_peaks_on_the_same_output_pixel():
    rolls = [roll(57.0, [SRC]), roll(67.3, [SRC])]
    ref = rs.resample(rolls)
    peaks = []
    for r in rolls:   # same output grid, only one roll carrying the source
        other = [roll(57.0 if r is rolls[1] else 67.3)]
        pair = [r] + other if r is rolls[0] else other + [r]
        o = rs.resample(pair)
        assert o.sci.shape == ref.sci.shape
        peaks.append(np.unravel_index(np.nanargmax(o.sci), o.sci.shape))
    assert peaks[0] == peaks[1]


def test_flux_conserved_at_another_pixel_scale():
    rolls = [roll(57.0, [SRC]), roll(67.3, [SRC])]
    out = rs.resample(rolls, pixel_scale=0.05)
    np.testing.assert_allclose(np.sqrt(abs(np.linalg.det(out.wcs.pixel_scale_matrix))) * 3600, 0.05, rtol=1e-9)
    # surface brightness is preserved, so flux = sum * pixel area
    np.testing.assert_allclose(np.nansum(out.sci) * 0.05 ** 2, 1000.0 * SCALE ** 2, rtol=0.01)
    assert out.primary["PXSCLRT"] == pytest.approx(0.05 / SCALE, rel=1e-3)
    assert out.header["PIXAR_A2"] == pytest.approx(0.05 ** 2)
    x, y = map(float, out.wcs.world_to_pixel_values(SRC[0], SRC[1]))
    np.testing.assert_allclose(centroid(out.sci, x, y, r=8), (x, y), atol=0.05)


def test_north_up_cd_has_no_rotation_and_east_left():
    out = rs.resample([roll(57.0), roll(67.3)])
    cd = out.wcs.pixel_scale_matrix
    assert cd[0, 0] < 0 and cd[1, 1] > 0
    np.testing.assert_allclose([cd[0, 1], cd[1, 0]], 0, atol=1e-15)
    np.testing.assert_allclose(-cd[0, 0] * 3600, SCALE, rtol=1e-4)
    h = out.header
    assert h["CTYPE1"] == "RA---TAN" and h["CTYPE2"] == "DEC--TAN"
    w = WCS(h, naxis=2)                                  # the header carries the same WCS
    np.testing.assert_allclose(w.pixel_to_world_values(10, 20), out.wcs.pixel_to_world_values(10, 20), atol=1e-12)
    c = rs.compass(out.wcs, out.wcs.wcs.crpix - 1, 10)                 # at the reference point (meridians converge)
    np.testing.assert_allclose(c["N"], (0, 10), atol=1e-6)
    np.testing.assert_allclose(c["E"], (-10, 0), atol=1e-6)


def test_first_roll_orientation_reproduces_the_first_input():
    a, b = roll(57.0, sip=False), roll(67.3, sip=False)
    out = rs.resample([a, b], north_up=False)
    cd_in, cd_out = a.wcs.pixel_scale_matrix, out.wcs.pixel_scale_matrix
    np.testing.assert_allclose(cd_out, cd_in, rtol=1e-6, atol=1e-13)     # same rotation, parity and scale
    pa, parity = rs.orientation_at(out.wcs, out.wcs.wcs.crpix - 1)
    assert pa == pytest.approx(57.0, abs=1e-6) and parity == -1
    # with SIP, the linear part at the centre is what is reproduced
    out = rs.resample([roll(57.0), roll(67.3)], north_up=False)
    assert rs.orientation_at(out.wcs, out.wcs.wcs.crpix - 1)[0] == pytest.approx(57.0, abs=0.01)
    # and an explicit rotation
    out = rs.resample([a, b], rotation=30.0)
    assert rs.orientation_at(out.wcs, out.wcs.wcs.crpix - 1) == (pytest.approx(30.0, abs=1e-6), -1)


def test_output_covers_the_union_of_footprints():
    a = roll(57.0)
    b = roll(67.3, crval=offset(2.0, -1.0))             # second pointing offset by 2.2"
    out = rs.resample([a, b])
    ny, nx = out.sci.shape
    for e in (a, b):
        x, y = out.wcs.world_to_pixel_values(*rs.sky_footprint(e.wcs, e.shape).T)
        assert x.min() >= -0.5 - 1e-6 and y.min() >= -0.5 - 1e-6
        assert x.max() <= nx - 0.5 + 1e-6 and y.max() <= ny - 0.5 + 1e-6
    # the grid is tight: no empty border row or column
    cov = out.wht > 0
    assert cov[0].any() and cov[-1].any() and cov[:, 0].any() and cov[:, -1].any()


def test_flagged_and_nan_pixels_get_zero_weight():
    a, b = roll(57.0, [SRC], noise=1.0, seed=1), roll(67.3, [SRC], noise=1.0, seed=2)
    clean = rs.resample([a, b])
    bad = b.copy()
    bad.sci[:, 40:50, 30:70] = 1e6; bad.dq[:, 40:50, 30:70] = DO_NOT_USE
    bad.sci[:, 60:62, :] = -1e6; bad.dq[:, 60:62, :] = NON_SCIENCE
    bad.sci[:, 10:20, 10:20] = np.nan                                       # NaN with a clean DQ
    bad.err[:, 80:82, 80:82] = np.nan                                       # NaN error
    out = rs.resample([a, bad])
    ok = out.wht > 0
    assert np.isfinite(out.sci[ok]).all() and np.isfinite(out.err[ok]).all()
    assert np.nanmax(np.abs(out.sci)) < 100                                 # nothing of the 1e6 leaks
    assert (out.wht <= clean.wht + 1e-4).all() and (out.wht < clean.wht - 1).any()
    # where roll b lost its pixels, the output is roll a's alone (same grid: b entirely flagged still shapes it)
    gone = b.copy(); gone.dq[:] = DO_NOT_USE
    only_a = rs.resample([a, gone])
    assert only_a.sci.shape == out.sci.shape
    lost = ok & np.isclose(out.wht, only_a.wht, rtol=0, atol=1e-5) & (clean.wht > only_a.wht + 1)
    assert lost.sum() > 300
    np.testing.assert_allclose(out.sci[lost], only_a.sci[lost], rtol=1e-5, atol=1e-6)
    # good_bits=None ignores the DQ: the 1e6 pixels are then used
    assert np.nanmax(rs.resample([a, bad], good_bits=None).sci) > 1e4
    # OUTLIER is harmless by default and excludes when not ignored
    c = b.copy(); c.sci[:, 40:50, 30:70] = 1e6; c.dq[:, 40:50, 30:70] = OUTLIER
    assert np.nanmax(rs.resample([a, c]).sci) > 1e4
    assert np.nanmax(rs.resample([a, c], good_bits="~DO_NOT_USE+NON_SCIENCE+OUTLIER").sci) < 100


def test_error_propagation_predicts_the_noise():
    a, b = roll(57.0, noise=2.0, seed=3), roll(67.3, noise=2.0, seed=4)
    out = rs.resample([a, b])
    full = out.wht > 0.95 * np.nanmax(out.wht)
    rms_err = np.sqrt(np.mean(out.err[full] ** 2))
    assert np.std(out.sci[full]) == pytest.approx(rms_err, rel=0.05)
    assert rms_err < 2.0 / np.sqrt(6)                  # drizzling averages neighbours too
    # ivm weights: a noisier roll counts less
    c = roll(67.3, noise=2.0, seed=4); c.err[:] = 4.0
    w = rs.resample([a, c]).wht
    assert np.nanmax(w) == pytest.approx(3 / 4 + 3 / 16, rel=0.01)


def test_weight_types():
    a, b = roll(57.0, sip=False), roll(57.0, sip=False)          # same grid
    a.sci[:] = 1.0; b.sci[:] = 4.0
    b.primary["EFFINTTM"] = 30.0
    out = rs.resample([a, b], weight_type="exptime")
    np.testing.assert_allclose(out.sci[48, 48], (10 * 1 + 30 * 4) / 40, rtol=1e-5)
    out = rs.resample([a, b], weight_type=None)
    np.testing.assert_allclose(out.sci[48, 48], 2.5, rtol=1e-5)
    b.var = {"VAR_RNOISE": np.full(b.sci.shape, 0.25, np.float32)}         # VAR_RNOISE wins over ERR
    out = rs.resample([a, b])
    np.testing.assert_allclose(out.sci[48, 48], (1 * 1 + 4 * 4) / 5, rtol=1e-5)
    assert out.primary["RESWHT"] == "ivm"


def test_metadata_and_context():
    a, b = roll(57.0, nints=20, name="jw_roll1_psfsub.fits"), roll(67.3, nints=20)
    out = rs.resample([a, b])
    assert out.primary["TARGPROP"] == "AU-MIC" and out.primary["NDRIZ"] == 2
    assert out.primary["PIXFRAC"] == 1.0 and out.header["BUNIT"] == "MJy/sr"
    assert out.sci.dtype == np.float32 and out.err.dtype == np.float32 and out.wht.dtype == np.float32
    assert out.con.dtype == np.int32 and out.con.shape == (2,) + out.sci.shape         # 40 integrations: 2 planes
    ny, nx = out.sci.shape
    np.testing.assert_array_equal(decode_context(out.con, [nx // 2], [ny // 2])[0], np.arange(40))
    corner = np.argwhere(out.wht > 0)[0]                        # an edge pixel only one roll reaches
    ids = decode_context(out.con, [corner[1]], [corner[0]])[0]
    assert len(ids) == 20 and (ids.max() < 20 or ids.min() >= 20)


def test_pixfrac_and_kernels():
    rolls = [roll(57.0, [SRC]), roll(67.3, [SRC])]
    for kernel in ("square", "point", "turbo"):
        out = rs.resample(rolls, kernel=kernel, pixfrac=0.8 if kernel != "point" else 1.0)
        x, y = map(float, out.wcs.world_to_pixel_values(SRC[0], SRC[1]))
        good = np.nan_to_num(out.sci)
        np.testing.assert_allclose(centroid(good, x, y), (x, y), atol=0.1)
        assert out.primary["PIXFRAC"] == (0.8 if kernel != "point" else 1.0)


def test_bad_inputs_raise_clear_errors():
    a = roll(57.0)
    nowcs = a.replace(header=fits.Header({"BUNIT": "MJy/sr"}), path="jw01_nowcs_psfsub.fits")
    with pytest.raises(DataError, match="jw01_nowcs_psfsub.fits: no 2-D celestial WCS"):
        rs.resample([a, nowcs])
    linear = a.replace(header=fits.Header({"CTYPE1": "X", "CTYPE2": "Y", "CDELT1": 1.0, "CDELT2": 1.0}), path="jw_lin.fits")
    with pytest.raises(DataError, match="jw_lin.fits: no 2-D celestial WCS"):
        rs.resample([linear])
    with pytest.raises(DataError, match="no psfsub exposures"):
        rs.resample([])
    with pytest.raises(InputError, match="kernel"):
        rs.resample([a], kernel="bilinear")
    with pytest.raises(InputError, match="pixfrac"):
        rs.resample([a], pixfrac=1.5)
    with pytest.raises(InputError, match="weight_type"):
        rs.resample([a], weight_type="ivm-sky")
    flagged = a.copy(); flagged.dq[:] = DO_NOT_USE
    with pytest.raises(DataError, match="every pixel"):
        rs.resample([flagged.replace(path="jw_flagged.fits")])


def test_eighty_integrations_of_320_take_a_few_seconds(monkeypatch):
    calls = []
    real = rs.calc_pixmap
    monkeypatch.setattr(rs, "calc_pixmap", lambda *a, **k: calls.append(1) or real(*a, **k))
    rng = np.random.default_rng(0)
    rolls = []
    for pa in (57.0, 67.3):
        e = roll(pa, nints=1, shape=(320, 320))
        e = e.replace(sci=rng.standard_normal((40, 320, 320)).astype(np.float32),
                      err=np.ones((40, 320, 320), np.float32), dq=np.zeros((40, 320, 320), np.uint32))
        rolls.append(e)
    t0 = time.process_time()                                 # CPU time: robust to other jobs on a shared machine
    out = rs.resample(rolls)
    dt = time.process_time() - t0
    assert len(calls) == 2                                   # one pixel map per exposure, not per integration
    assert out.con.shape[0] == 3                             # 80 integrations: 3 context planes
    assert dt < 4.0, f"resample of 80 x 320x320 took {dt:.1f} s of CPU"


def test_writes_and_reads_back_as_an_i2d(tmp_path):
    products = pytest.importorskip("coronlit.products")
    out = rs.resample([roll(57.0, [SRC]), roll(67.3, [SRC])])
    path = products.write_product(out, tmp_path / "x_i2d.fits")
    back = products.read_product(path)
    np.testing.assert_array_equal(back.sci, out.sci)
    np.testing.assert_array_equal(back.con, out.con)
    np.testing.assert_allclose(back.wcs.world_to_pixel_values(SRC[0], SRC[1]),
                               out.wcs.world_to_pixel_values(SRC[0], SRC[1]), atol=1e-8)
    dm = pytest.importorskip("stdatamodels.jwst.datamodels")
    with dm.open(path) as m:
        assert type(m).__name__ == "ImageModel" and m.con.shape == out.con.shape


# --- real data: AU Mic (GO 1184), two rolls 10 deg apart; the edge-on disk is at PA 128.5-128.7 deg east of north ---


def disk_pa(img, x0, y0):
    "Angle (deg, 0..180, counter-clockwise from +y) of the brightest line through (x0, y0), 1-4 arcsec out."
    from scipy.ndimage import map_coordinates
    th, r = np.arange(0, 180, 0.25), np.arange(16, 64, 0.5)
    img = np.nan_to_num(img)
    prof = []
    for t in np.deg2rad(th):
        dx, dy = -np.sin(t), np.cos(t)
        prof.append(map_coordinates(img, [np.r_[y0 + r * dy, y0 - r * dy], np.r_[x0 + r * dx, x0 - r * dx]], order=1).mean())
    return th[int(np.argmax(prof))]


def test_real_aumic_disk_comes_out_at_its_known_position_angle(aumic_dir, aumic_asn):
    import json
    from coronlit.products import read_calints
    mem = json.load(open(aumic_asn))["products"][0]["members"]
    sci = [read_calints(aumic_dir / m["expname"]) for m in mem if m["exptype"] == "science"]
    refs = np.concatenate([read_calints(aumic_dir / m["expname"]).sci for m in mem if m["exptype"] == "psf"]).astype(float)
    subs = []
    for e in sci:   # a plain least-squares reference subtraction (the files are already star-aligned)
        t = e.sci[0].astype(float)
        ok = np.isfinite(t) & np.isfinite(refs).all(0)
        coef = np.linalg.lstsq(refs[:, ok].T, t[ok], rcond=None)[0]
        res = np.full(t.shape, np.nan, np.float32); res[ok] = t[ok] - refs[:, ok].T @ coef
        subs.append(e.replace(sci=res[None]))
    star = tuple(map(float, sci[0].wcs.pixel_to_world_values(150.0, 174.0)))   # the star sits at the mask centre
    out = rs.resample(subs)
    x0, y0 = map(float, out.wcs.world_to_pixel_values(*star))
    assert disk_pa(out.sci, x0, y0) == pytest.approx(128.6, abs=1.0)            # north up, east left: PA read directly
    first = rs.resample(subs, north_up=False)                                    # jwst's orientation: roll 1's frame
    pa_y = rs.orientation_at(first.wcs, first.wcs.wcs.crpix - 1)[0]
    assert pa_y == pytest.approx(sci[0].header["PA_APER"], abs=0.01)
    x1, y1 = map(float, first.wcs.world_to_pixel_values(*star))
    assert (disk_pa(first.sci, x1, y1) + pa_y) % 180 == pytest.approx(128.6, abs=1.0)


def test_synth_companion_lands_where_the_output_wcs_says(tmp_path):
    synth = pytest.importorskip("coronlit.synth")
    from coronlit.asn import read_asn
    from coronlit.products import read_calints
    asn = read_asn(synth.make_dataset(tmp_path, n_sci=2, n_ref=2, nints=2, seed=0,
                                      companion=dict(sep=1.0, pa=60.0, contrast=1e-2)))
    comp = synth.load_truth(tmp_path)["companion"]
    sci = [read_calints(m.path) for m in asn.science]
    refs = np.concatenate([read_calints(m.path).sci for m in asn.psf]).astype(float)
    subs = []
    for e in sci:   # least-squares reference subtraction, per integration
        out = np.full(e.sci.shape, np.nan, np.float32)
        for i, t in enumerate(e.sci.astype(float)):
            ok = np.isfinite(t) & np.isfinite(refs).all(0)
            c = np.linalg.lstsq(refs[:, ok].T, t[ok], rcond=None)[0]
            out[i][ok] = t[ok] - refs[:, ok].T @ c
        subs.append(e.replace(sci=out))
    i2d = rs.resample(subs)
    x, y = map(float, i2d.wcs.world_to_pixel_values(comp["ra"], comp["dec"]))
    xc, yc = centroid(np.nan_to_num(i2d.sci), x, y, r=3)
    assert np.hypot(xc - x, yc - y) < 0.1            # the (slightly asymmetric, masked) companion PSF is where truth says
    for e in sci:                                     # truth and each file's WCS agree on where the companion is
        np.testing.assert_allclose(e.wcs.world_to_pixel_values(comp["ra"], comp["dec"]), comp["xy"][e.name], atol=1e-6)
    # and flux: a 5-pixel aperture holds the same MJy/sr sum as in the rolls (same pixel scale)
    def ap(img, x0, y0, r=5):
        yy, xx = np.indices(img.shape)
        return np.nansum(np.where((xx - x0) ** 2 + (yy - y0) ** 2 <= r * r, img, 0))
    f_in = np.mean([ap(s.sci.mean(0), *e.wcs.world_to_pixel_values(comp["ra"], comp["dec"])) for e, s in zip(sci, subs)])
    assert ap(i2d.sci, x, y) == pytest.approx(f_in, rel=0.01)
