"Full-size checks of coronlit.synth: NIRCam and MIRI geometries, headers, determinism, realism of the residuals."
import os
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"): os.environ.setdefault(_v, "1")
import hashlib, json, math, time
from pathlib import Path
import numpy as np
import pytest
from astropy.io import fits
from coronlit.synth import make_dataset, load_truth, geometry
from coronlit.products import read_calints, read_psfmask
from coronlit.asn import read_asn
from coronlit.core import InputError, OutputError
from coronlit.dq import DO_NOT_USE, NON_SCIENCE


def _sha(p): return hashlib.sha256(Path(p).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def nircam(tmp_path_factory):
    d = tmp_path_factory.mktemp("nircam")
    t = time.perf_counter()
    asn = make_dataset(d, instrument="nircam", n_sci=2, n_ref=2, nints=4, seed=11)
    return dict(dir=d, asn=asn, seconds=time.perf_counter() - t, truth=load_truth(d))


@pytest.fixture(scope="module")
def miri(tmp_path_factory):
    d = tmp_path_factory.mktemp("miri")
    asn = make_dataset(d, instrument="miri", n_sci=2, n_ref=2, nints=4, seed=12)
    return dict(dir=d, asn=asn, truth=load_truth(d))


def test_nircam_full_size_files(nircam):
    assert nircam["seconds"] < 20                      # a few seconds on an idle core
    asn = read_asn(nircam["asn"])
    assert [m.exptype for m in asn.members] == ["science", "science", "psf", "psf"]
    assert asn.members[0].path.name == "jw09999001001_03107_00001_nrcalong_calints.fits"
    tr = nircam["truth"]
    for m, ex in zip(asn.members, tr["exposures"]):
        e = read_calints(m.path)
        assert e.sci.shape == (4, 320, 320) and e.sci.dtype == np.float32 and e.dq.dtype == np.uint32
        assert set(e.var) == {"VAR_POISSON", "VAR_RNOISE", "VAR_FLAT"} and e.area.shape == (320, 320)
        assert len(e.int_times) == 4
        p = e.primary
        assert (p["TELESCOP"], p["INSTRUME"], p["DETECTOR"], p["FILTER"], p["PUPIL"], p["CORONMSK"], p["EXP_TYPE"],
                p["SUBARRAY"], p["NINTS"], p["DATAMODL"]) == ("JWST", "NIRCAM", "NRCALONG", "F356W", "MASKRND",
                                                              "MASKA335R", "NRC_CORON", "SUB320A335R", 4, "CubeModel")
        assert p["IS_PSF"] == (m.exptype == "psf") and p["TARGNAME"] == ex["target"]
        assert e.header["BUNIT"] == "MJy/sr" and e.header["VPARITY"] == -1
        assert e.header["PA_APER"] == pytest.approx(e.header["ROLL_REF"] + e.header["V3I_YANG"])
        assert e.roll == pytest.approx(ex["roll_ref"]) and e.pixel_scale == pytest.approx(0.063)
        # the star is near (150, 174) and the WCS puts its RA/Dec there
        assert np.allclose(ex["star_xy"], (150, 174), atol=0.5)
        assert np.allclose(e.wcs.world_to_pixel_values(p["TARG_RA"], p["TARG_DEC"]), ex["star_xy"], atol=1e-6)
        # the brightest light is attenuated by the mask: the core is far below an unocculted star's peak
        assert np.nanmax(e.sci) < 2e-3 * tr["star"]["flux_e"] * ex["flux_scale"] * tr["units"]["mjysr_per_electron"]
    mask = read_psfmask(nircam["dir"] / tr["psfmask"], shape=(320, 320))
    assert np.unravel_index(mask.argmin(), mask.shape) == (174, 150) and 0 <= mask.min() < 1e-6 and mask.max() <= 1
    assert abs(mask[174, 150 - 8] - 0.25) < 0.05            # like the real MASK335R PSFMASK at 0.5"


def test_nircam_roll_geometry(nircam):
    "The companion moves with the roll exactly as a rotation about the star by the roll difference."
    tr = nircam["truth"]; c = tr["companion"]
    (f1, e1), (f2, e2) = [(e["file"], e) for e in tr["exposures"][:2]]
    v1 = np.subtract(c["xy"][f1], e1["star_xy"]); v2 = np.subtract(c["xy"][f2], e2["star_xy"])
    assert np.hypot(*v1) * 0.063 == pytest.approx(1.0, abs=1e-4) and np.hypot(*v2) * 0.063 == pytest.approx(1.0, abs=1e-4)
    turn = math.degrees(math.atan2(v2[1], v2[0]) - math.atan2(v1[1], v1[0]))
    assert (turn + 180) % 360 - 180 == pytest.approx(-(e2["roll_ref"] - e1["roll_ref"]), abs=1e-3)


def test_miri_full_size(miri):
    asn = read_asn(miri["asn"]); tr = miri["truth"]
    assert asn.product_name == "jw09999-c1000_t001_miri_f1550c-mask1550"
    e = read_calints(asn.members[0].path)
    assert e.sci.shape == (4, 224, 288) and e.exp_type == "MIR_4QPM" and e.instrument == "MIRI"
    assert e.primary["CORONMSK"] == "4QPM_1550" and e.primary["FILTER"] == "F1550C" and "PUPIL" not in e.primary
    assert e.pixel_scale == pytest.approx(0.11)
    # outside the 24" field: NON_SCIENCE | DO_NOT_USE and NaN
    assert (e.dq[:, 112, 0] & (NON_SCIENCE | DO_NOT_USE)).all() and np.isnan(e.sci[:, 112, 0]).all()
    mask = read_psfmask(miri["dir"] / tr["psfmask"], shape=(224, 288))
    cx, cy = tr["mask_center"]
    assert mask[cy, cx + 20] < 1e-6 and mask[cy + 20, cx] < 1e-6 and mask[cy + 20, cx + 20] > 0.99   # 4 quadrants
    assert tr["companion"]["sep"] == 1.5 and all(0.3 < t <= 1 for t in tr["companion"]["transmission"].values())
    assert not (e.dq[:, cy, cx - 100:cx + 100] & NON_SCIENCE).any()   # the 4QPM's cross is inside the field


def test_miri_lyot_full_size(tmp_path):
    asn = make_dataset(tmp_path, instrument="miri_lyot", nints=2, seed=13)
    tr = load_truth(tmp_path); e = read_calints(read_asn(asn).members[0].path)
    assert e.sci.shape == (2, 304, 320) and e.exp_type == "MIR_LYOT" and e.primary["CORONMSK"] == "LYOT_2300"
    mask = read_psfmask(tmp_path / tr["psfmask"], shape=(304, 320))
    cx, cy = tr["mask_center"]
    assert mask[cy, cx + 10] < 1e-3 and mask[cy, cx + 25] > 0.99 and mask[cy, 0] == 0   # 2.16" spot, 30" field
    assert tr["companion"]["sep"] == 3.0 and min(tr["companion"]["transmission"].values()) > 0.99


def test_determinism(tmp_path):
    a = make_dataset(tmp_path / "a", shape=(64, 64), nints=2, seed=5)
    b = make_dataset(tmp_path / "b", shape=(64, 64), nints=2, seed=5)
    c = make_dataset(tmp_path / "c", shape=(64, 64), nints=2, seed=6)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    for n in names: assert _sha(tmp_path / "a" / n) == _sha(tmp_path / "b" / n), n
    m = read_asn(a).members[0].path.name
    assert not np.array_equal(fits.getdata(tmp_path / "a" / m, "SCI"), fits.getdata(tmp_path / "c" / m, "SCI"),
                              equal_nan=True)


def _cleaned(path, crs):
    "SCI as float64 with the truth's cosmic rays replaced by the median over integrations."
    d = fits.getdata(path, "SCI").astype(float); med = np.median(d, 0)
    for i, y, x in crs: d[i, y, x] = med[y, x]
    return d


def _residuals(folder, tr, rmax=9.0):
    "Per science exposure: raw, plain-subtracted and KLIP (10 modes) mean residuals, on a zone around the star."
    sci = [e for e in tr["exposures"] if e["exptype"] == "science"]
    refs = [e for e in tr["exposures"] if e["exptype"] == "psf"]
    R = np.concatenate([_cleaned(folder / e["file"], tr["cosmic_rays"][e["file"]]) for e in refs])
    ny, nx = R.shape[1:]; cx, cy = tr["mask_center"]
    yy, xx = np.indices((ny, nx)); r = np.hypot(xx - cx, yy - cy) * tr["pixel_scale"]
    out = []
    for e in sci:
        S = _cleaned(folder / e["file"], tr["cosmic_rays"][e["file"]])
        zone = np.isfinite(R).all(0) & np.isfinite(S).all(0) & (r > 0.25) & (r < rmax)
        Rm, Sm = R[:, zone], S[:, zone]
        mr = Rm.mean(0)
        plain = np.mean([s - (s @ mr) / (mr @ mr) * mr for s in Sm], 0)
        _, _, vt = np.linalg.svd(Rm - Rm.mean(1, keepdims=True), full_matrices=False)
        z = vt[:10]
        klip = np.mean([(s - s.mean()) - z.T @ (z @ (s - s.mean())) for s in Sm], 0)
        err = fits.getdata(folder / e["file"], "ERR").astype(float)[:, zone]
        noise = np.sqrt((err ** 2).mean(0) / len(err))
        maps = {}
        for k, v in dict(raw=Sm.mean(0), plain=plain, klip=klip, noise=noise).items():
            maps[k] = np.full((ny, nx), np.nan); maps[k][zone] = v
        out.append((e, maps))
    return out, r, (xx, yy)


def _ring_std(im, r, rr, xy=None, grid=None, excl=4):
    ring = np.isfinite(im) & (np.abs(r - rr) < 0.1)
    if xy is not None: ring &= np.hypot(grid[0] - xy[0], grid[1] - xy[1]) > excl
    return float(np.std(im[ring]))


def _snr(im, xy, center, grid, rad=1.5):
    "Aperture S/N of a point at `xy` against apertures at the same separation (companion's own excluded)."
    xx, yy = grid; cx, cy = center
    ap = lambda x0, y0: np.nansum(im[np.hypot(xx - x0, yy - y0) < rad])
    sep = math.hypot(xy[0] - cx, xy[1] - cy); th = math.atan2(xy[1] - cy, xy[0] - cx)
    n = int(2 * math.pi * sep / (2 * rad + 0.2))
    ref = [ap(cx + sep * math.cos(th + 2 * math.pi * k / n), cy + sep * math.sin(th + 2 * math.pi * k / n))
           for k in range(2, n - 1)]
    return (ap(*xy) - np.mean(ref)) / np.std(ref)


@pytest.fixture(scope="module")
def faint(tmp_path_factory):
    d = tmp_path_factory.mktemp("faint")
    make_dataset(d, nints=4, seed=3, n_ref=5, ref_dither="5-POINT-DIAMOND",   # one reference star, 5-point SGD
                 companion=dict(sep=1.0, pa=60.0, contrast=1e-5))
    return d, load_truth(d)


def test_klip_beats_plain_and_speckles_limit_near_star(faint):
    d, tr = faint
    res, r, grid = _residuals(d, tr)
    for e, m in res:
        cxy = tr["companion"]["xy"][e["file"]]
        for rr in (0.4, 0.7):        # near the star: speckle-limited, and KLIP beats a plain scaled subtraction
            k, p, n = (_ring_std(m[x], r, rr, cxy, grid) for x in ("klip", "plain", "noise"))
            assert k < p / 1.5 and k > 3 * n, (rr, k, p, n)
        p, n = _ring_std(m["plain"], r, 6.0, cxy, grid), np.nanmedian(m["noise"][np.abs(r - 6) < 0.1])
        assert p < 1.6 * n, (p, n)                                       # far away: noise-limited


def test_faint_companion_found_after_klip_not_before(faint):
    d, tr = faint
    res, r, grid = _residuals(d, tr, rmax=3.5)
    snr_raw, snr_klip = [], []
    for e, m in res:
        cxy = tr["companion"]["xy"][e["file"]]
        snr_raw.append(_snr(m["raw"], cxy, tr["mask_center"], grid))
        snr_klip.append(_snr(m["klip"], cxy, tr["mask_center"], grid))
    assert max(snr_raw) < 4, snr_raw
    assert all(5 < s < 40 for s in snr_klip), snr_klip


def test_cosmic_rays_found_by_outlier_detection(nircam):
    od = pytest.importorskip("coronlit.outlier_detection")
    tr = nircam["truth"]; cx, cy = tr["mask_center"]
    found = total = 0
    for m in read_asn(nircam["asn"]).members:
        out = od.outlier_detection(read_calints(m.path))
        for i, y, x in tr["cosmic_rays"][m.path.name]:
            if math.hypot(x - cx, y - cy) * 0.063 < 1.5: continue      # the core's own noise can hide a weak hit
            total += 1; found += bool(out.dq[i, y, x] & DO_NOT_USE)
    assert total > 20 and found / total > 0.9, (found, total)


def test_disk_turns_with_roll(tmp_path):
    disk = dict(pa=130.0, flux=1e-3, r_in=1.0, r_out=4.0, height=0.05, index=1.5)
    make_dataset(tmp_path / "d", nints=1, seed=1, companion=None, disk=disk, shape=(160, 160))
    make_dataset(tmp_path / "n", nints=1, seed=1, companion=None, shape=(160, 160))
    tr = load_truth(tmp_path / "d"); assert tr["disk"]["pa"] == 130.0 and tr["companion"] is None
    for ex in tr["exposures"][:1]:
        e, n = read_calints(tmp_path / "d" / ex["file"]), read_calints(tmp_path / "n" / ex["file"])
        diff = np.nan_to_num(e.sci[0] - n.sci[0])
        x, y = ex["star_xy"]
        # 2" from the star along the disk's PA, through this roll's WCS, versus perpendicular to it
        pa = math.radians(ex["pa_aper"] - 130.0)
        along = diff[int(round(y + 2 / 0.063 * math.cos(pa))), int(round(x + 2 / 0.063 * math.sin(pa)))]
        perp = diff[int(round(y - 2 / 0.063 * math.sin(pa))), int(round(x + 2 / 0.063 * math.cos(pa)))]
        assert along > 20 * abs(perp) and along > 0


def test_gwcs_option(tmp_path):
    from stdatamodels.jwst import datamodels
    asn = make_dataset(tmp_path, shape=(64, 64), nints=2, seed=2, gwcs=True)
    m0 = read_asn(asn).members[0].path
    with datamodels.open(m0) as m:
        assert isinstance(m, datamodels.CubeModel) and m.meta.wcs is not None
        assert m.meta.exposure.type == "NRC_CORON" and m.meta.wcsinfo.roll_ref == pytest.approx(60.0)
        ra, dec = m.meta.wcs(10.0, 20.0)
    e = read_calints(m0)
    assert np.allclose(e.wcs.pixel_to_world_values(10.0, 20.0), (ra, dec), atol=1e-10)
    assert e.primary["CORONMSK"] == "MASKA335R"


def test_bad_inputs(tmp_path):
    with pytest.raises(InputError, match="unknown instrument"): make_dataset(tmp_path, instrument="nirspec")
    with pytest.raises(InputError, match="unknown synth parameter"): make_dataset(tmp_path, readnoise=3)
    with pytest.raises(InputError, match="companion needs"): make_dataset(tmp_path, shape=(64, 64), companion=dict(sep=1))
    f = tmp_path / "file"; f.write_text("x")
    with pytest.raises(OutputError, match="is a file"): make_dataset(f)
    with pytest.raises(InputError, match="must be >= 1"): make_dataset(tmp_path / "z", n_ref=0)
    ro = tmp_path / "ro"; ro.mkdir(); ro.chmod(0o500)
    try:
        if not os.access(ro, os.W_OK):           # (root can write anywhere: then there is nothing to test)
            with pytest.raises(OutputError, match="not writable"): make_dataset(ro)
    finally: ro.chmod(0o700)
    with pytest.raises(InputError, match="no truth.json"): load_truth(tmp_path)


@pytest.mark.slow
def test_forty_integrations_under_a_minute(tmp_path):
    t = time.process_time()                     # CPU time: a busy machine does not make the simulator slower
    asn = make_dataset(tmp_path, nints=40, seed=4)
    assert time.process_time() - t < 60
    assert read_calints(read_asn(asn).members[-1].path).sci.shape == (40, 320, 320)
