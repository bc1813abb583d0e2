"""align_refs: bad-pixel repair against jwst 3.0.0's median_replace_img, correct edges, shift recovery on coronlit.synth
data (<= 0.02 px rms vs truth), the 4-D product, jwst's own fit for comparison, and speed."""
import time
from pathlib import Path
import numpy as np
import pytest
from astropy.io import fits
from coronlit.products import Exposure, read_calints, read_psfmask
from coronlit.align_refs import (fix_bad_pixels, align_refs, align_cube, fourier_shift_image, default_weight,
                                 star_centre)


def _jwst_median_replace(cube, dq, box, bits=1):
    from stdatamodels.jwst.datamodels import CubeModel
    from jwst.coron.median_replace_img import median_replace_img
    m = CubeModel(data=cube.copy(), dq=dq.copy())
    m.meta.instrument.name = "NIRCAM"
    return median_replace_img(m, box, bits).data


def _random_cube(seed, shape=(3, 41, 53), frac=0.12):
    rng = np.random.default_rng(seed)
    cube = rng.normal(100, 15, shape).astype(np.float32)
    dq = np.where(rng.random(shape) < frac, rng.choice([1, 2, 16, 17], shape), 0).astype(np.uint32)
    cube[(dq & 1) != 0] = np.nan                          # stage 2 writes NaN at DO_NOT_USE
    return cube, dq


@pytest.mark.jwst
@pytest.mark.parametrize("box", [3, 4, 5, 7])
@pytest.mark.parametrize("bits", [1, 17])
def test_median_replacement_matches_jwst_away_from_edges(box, bits):
    cube, dq = _random_cube(box * 10 + bits)
    theirs = _jwst_median_replace(cube, dq, box, bits)
    ours = fix_bad_pixels(cube, (dq & bits) != 0, box)
    h = box // 2                                          # jwst's box is 2*(box//2)+1 wide
    inner = (slice(None), slice(h, None), slice(h, None)) # jwst's slicing empties boxes in rows/cols < h
    np.testing.assert_array_equal(ours[inner], theirs[inner])
    assert ours.dtype == np.float32 and np.isfinite(ours).all()
    # jwst writes 0 into bad pixels of row 0 / column 0; ours are medians of real neighbours
    edge = ((dq & bits) != 0) | ~np.isfinite(cube)
    edge[:, h:, h:] = False
    assert edge.any() and (theirs[edge] == 0).all() and (ours[edge] != 0).all()


def _reference_fill(img, bad, box):
    "Slow, obvious version: median of the good pixels in the box cut at the edges, growing the box until one is good."
    out = img.copy()
    ny, nx = img.shape
    for y, x in zip(*np.nonzero(bad)):
        h = box // 2
        while True:
            sl = (slice(max(y - h, 0), y + h + 1), slice(max(x - h, 0), x + h + 1))
            vals = img[sl][~bad[sl]]
            if vals.size: out[y, x] = np.median(vals); break
            h += 1
    return out


@pytest.mark.parametrize("box", [3, 5])
def test_median_replacement_correct_everywhere_including_edges(box):
    rng = np.random.default_rng(box)
    img = rng.normal(size=(23, 31)).astype(np.float32)
    bad = rng.random(img.shape) < 0.3
    bad[0, :] = bad[:, -1] = True                         # whole edge rows/columns bad
    bad[8:16, 8:20] = True                                # a block larger than the box: the box must grow
    img[bad & (rng.random(img.shape) < 0.5)] = np.inf
    ours = fix_bad_pixels(img, bad, box)
    np.testing.assert_array_equal(ours, _reference_fill(np.where(bad, 0, img).astype(np.float32), bad, box))
    np.testing.assert_array_equal(ours[~bad], img[~bad])


def test_large_holes_take_the_nearest_good_pixel():
    rng = np.random.default_rng(7)
    img = rng.normal(size=(60, 70)).astype(np.float32)
    bad = np.zeros(img.shape, bool); bad[10:50, 5:45] = True   # far deeper than box + growth
    out = fix_bad_pixels(img, bad, box=3, grow=3)
    gy, gx = np.nonzero(~bad)
    for y, x in [(30, 25), (29, 24), (20, 30), (45, 40)]:   # pixels needing more than the 9x9 box
        d2 = (gy - y) ** 2 + (gx - x) ** 2
        near = np.nonzero(d2 == d2.min())[0]
        assert out[y, x] in img[gy[near], gx[near]]


def test_miri_non_science_regions_are_fast(tmp_path):
    "MIRI 4QPM calints have ~33000 NON_SCIENCE + DO_NOT_USE pixels per integration: the repair must stay quick."
    from coronlit.synth import make_dataset, load_truth
    from coronlit.asn import read_asn
    asn = read_asn(make_dataset(tmp_path, instrument="miri", n_sci=1, n_ref=1, nints=2, seed=0))
    sci, ref = read_calints(asn.science[0].path), read_calints(asn.psf[0].path)
    t = time.process_time()
    fixed = fix_bad_pixels(sci.sci, (sci.dq & 1) != 0)
    dt = time.process_time() - t
    print(f"MIRI {sci.sci.shape}: {int(((sci.dq & 1) != 0).sum())} bad pixels repaired in {dt:.2f} s CPU")
    assert np.isfinite(fixed).all() and dt < 3
    out = align_refs(sci, ref, psfmask=read_psfmask(tmp_path / load_truth(tmp_path)["psfmask"]))
    assert np.isfinite(out.sci).all() and out.sci.shape == (2, 2, 224, 288)


def test_median_replacement_is_fast_on_a_big_cube():
    rng = np.random.default_rng(0)
    cube = rng.normal(size=(80, 320, 320)).astype(np.float32)
    mask = rng.random(cube.shape) < 0.01
    mask[5, 100:140, 100:140] = True                      # and one big flagged patch
    t = time.process_time()
    out = fix_bad_pixels(cube, mask)
    dt = time.process_time() - t
    print(f"fix_bad_pixels 80x320x320, {mask.sum()} bad pixels: {dt:.2f} s CPU")
    assert np.isfinite(out).all() and dt < 5


# --- shift recovery on coronlit.synth data ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def synth_set(tmp_path_factory):
    from coronlit.synth import make_dataset, load_truth
    from coronlit.asn import read_asn
    d = tmp_path_factory.mktemp("align_synth")
    asn = read_asn(make_dataset(d, n_sci=2, n_ref=2, nints=4, seed=1))
    truth = load_truth(d)
    pos = {e["file"]: np.array(e["star_xy_per_int"]) for e in truth["exposures"]}
    refs = [read_calints(m.path) for m in asn.psf]
    stack = refs[0].replace(sci=np.concatenate([r.sci for r in refs]), err=np.concatenate([r.err for r in refs]),
                            dq=np.concatenate([r.dq for r in refs]), var={}, int_times=None)
    scis = [read_calints(m.path) for m in asn.science]
    true = [pos[m.path.name][:, None, :] - np.concatenate([pos[r.path.name] for r in asn.psf])[None] for m in asn.science]
    return dict(scis=scis, stack=stack, true=true, psfmask=read_psfmask(d / truth["psfmask"]), truth=truth,
                ref_files=[m.path.name for m in asn.psf])


@pytest.mark.parametrize("weight", ["psfmask", "default"])
def test_shifts_recover_synth_truth(synth_set, weight):
    pm = synth_set["psfmask"] if weight == "psfmask" else None
    err = []
    for sci, true in zip(synth_set["scis"], synth_set["true"]):
        out = align_refs(sci, synth_set["stack"], psfmask=pm)
        err.append((out.shifts[..., :2] - true).reshape(-1, 2))
    err = np.concatenate(err)
    rms = float(np.sqrt((err ** 2).mean()))
    span = float(np.abs(np.concatenate([t.reshape(-1, 2) for t in synth_set["true"]])).max())
    print(f"synth NIRCam 320x320, weight={weight}: {len(err)} pairs, true offsets up to {span:.3f} px, "
          f"shift rms error {rms:.4f} px, max {np.abs(err).max():.4f} px")
    assert span > 0.1
    assert rms <= 0.02


def test_psfalign_product_on_synth(synth_set):
    sci, stack = synth_set["scis"][0], synth_set["stack"]
    out = align_refs(sci, stack, psfmask=synth_set["psfmask"])
    M, N = sci.nints, stack.nints
    assert out.sci.shape == out.err.shape == out.dq.shape == (M, N, 320, 320)
    assert out.sci.dtype == np.float32 and out.err.dtype == np.float32 and out.dq.dtype == np.uint32
    assert out.shifts.shape == (M, N, 3) and out.shifts.dtype == np.float64
    assert np.isfinite(out.sci).all() and np.isfinite(out.err).all() and (out.err >= 0).all()
    for m in range(M): np.testing.assert_array_equal(out.dq[m], stack.dq)       # reference DQ kept, flags and all
    # the scale is the best one for the aligned image: sum(w S T) / sum(w T^2) with T = aligned / scale; it follows
    # the stars' flux ratio only roughly (the light leaking round the mask depends on each star's offset from it)
    w = synth_set["psfmask"] * ((sci.dq & 1) == 0)
    s = fix_bad_pixels(sci.sci, (sci.dq & 1) != 0)
    for m, n in [(0, 0), (1, 5), (3, 7)]:
        T = out.sci[m, n] / out.shifts[m, n, 2]
        np.testing.assert_allclose((w[m] * s[m] * T).sum() / (w[m] * T * T).sum(), out.shifts[m, n, 2], rtol=1e-4)
    flux = {e["file"]: e["star_flux_e"] for e in synth_set["truth"]["exposures"]}
    ratio = flux[sci.path.name] / np.repeat([flux[n] for n in synth_set["ref_files"]], sci.nints)
    assert (np.abs(np.log(out.shifts[..., 2] / ratio)) < np.log(1.3)).all()
    # aligned references match the science better than unshifted ones for every pair (weighted by the PSFMASK); on
    # these data the wavefront difference between the stars, not the offset, dominates what is left
    w = synth_set["psfmask"]
    r = fix_bad_pixels(stack.sci, (stack.dq & 1) != 0)
    before = [(w * (s[m] - out.shifts[m, n, 2] * r[n]) ** 2).sum() for m in range(M) for n in range(N)]
    after = [(w * (s[m] - out.sci[m, n]) ** 2).sum() for m in range(M) for n in range(N)]
    ratio = np.array(after) / np.array(before)
    print(f"weighted residual after / before alignment: median {np.median(ratio):.3f}, max {ratio.max():.3f}")
    assert (ratio < 1).all() and np.median(ratio) < 0.95
    # the ERR is the reference ERR moved and scaled: its total is preserved up to the scale
    np.testing.assert_allclose(out.err[0, 0].sum(), out.shifts[0, 0, 2] * np.nan_to_num(stack.err[0]).sum(), rtol=0.02)


def test_psfalign_writes_as_quadmodel(synth_set, tmp_path):
    "The product (with its read-only broadcast DQ) goes through write_product and opens in stdatamodels as a QuadModel."
    from coronlit.products import read_product
    from coronlit.stream import write_product
    from stdatamodels.jwst import datamodels
    sci, stack = synth_set["scis"][1], synth_set["stack"]
    out = align_refs(sci, stack, psfmask=synth_set["psfmask"])
    assert not out.dq.flags.writeable
    path = write_product(out, tmp_path / "x_psfalign.fits")
    back = read_product(path)
    np.testing.assert_array_equal(back.sci, out.sci); np.testing.assert_array_equal(back.dq, out.dq)
    np.testing.assert_allclose(back.shifts, out.shifts)
    with datamodels.open(path) as m:
        assert type(m).__name__ == "QuadModel" and m.data.shape == out.sci.shape


# --- jwst's own fit, for comparison ----------------------------------------------------------------------------------

@pytest.mark.jwst
def test_jwst_fit_float32_stuck_float64_agrees(synth_set):
    "jwst 3.0.0's align_fourier_lsq returns 0 shift on float32 arrays; on float64 it agrees with ours (sign flipped)."
    from jwst.coron.imageregistration import align_fourier_lsq
    sci, stack, pm = synth_set["scis"][0], synth_set["stack"], synth_set["psfmask"]
    s = fix_bad_pixels(sci.sci[0], (sci.dq[0] & 1) != 0)
    r = fix_bad_pixels(stack.sci[0], (stack.dq[0] & 1) != 0)
    ours = align_refs(sci, stack, psfmask=pm).shifts[0, 0]
    true = synth_set["true"][0][0, 0]
    stuck = align_fourier_lsq(s.astype(np.float32), r.astype(np.float32), pm.astype(np.float32))
    fit64 = align_fourier_lsq(s.astype(np.float64), r.astype(np.float64), pm)
    print(f"true {true}, ours {ours[:2]}, jwst float32 {stuck[:2]}, jwst float64 {-fit64[:2]}")
    assert np.abs(stuck[:2]).max() < 1e-3 < np.abs(true).max()                  # the numpy-2 float32 bug
    # jwst fits the science onto the reference with weight psfmask**2; ours the reference onto the science with
    # weight psfmask: the two optima are close but not identical
    np.testing.assert_allclose(-fit64[:2], ours[:2], atol=0.01)


# --- speed -----------------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_speed_40_integrations_by_80_references():
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:320, :320]
    def psf(cx, cy):
        r2 = (x - cx) ** 2 + (y - cy) ** 2
        return 100 * (np.exp(-r2 / 18) - 0.9 * np.exp(-r2 / 8) + 0.01 * np.exp(-np.sqrt(r2) / 20))
    ps, pr = rng.normal(0, 0.1, (40, 2)), rng.normal(0, 0.1, (80, 2)) + [0.15, -0.1]
    sci = np.stack([psf(160 + a, 160 + b) for a, b in ps]) + rng.normal(0, 0.01, (40, 320, 320))
    refs = np.stack([psf(160 + a, 160 + b) for a, b in pr]) * 1.1 + rng.normal(0, 0.01, (80, 320, 320))
    wall, cpu = time.perf_counter(), time.process_time()
    out, err, sh = align_cube(sci.astype(np.float32), refs.astype(np.float32), default_weight(sci[0]),
                              ref_err=np.full(refs.shape, 0.01, np.float32))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    rms = np.sqrt(((sh[..., :2] - (ps[:, None] - pr[None])) ** 2).mean())
    print(f"align_cube 40 integrations x 80 references, 320x320: {wall:.1f} s wall, {cpu:.1f} s CPU, rms {rms:.2e} px")
    assert rms < 0.002
    assert cpu < 60


# --- real data ---------------------------------------------------------------------------------------------------------

def test_real_aumic_already_star_aligned(aumic_dir, aumic_asn):
    "The AU Mic files were star-aligned by SpaceKLIP: every measured shift must be (near) zero, and the product sane."
    from coronlit.asn import read_asn
    asn = read_asn(aumic_asn)
    refs = [read_calints(m.path) for m in asn.psf]
    stack = refs[0].replace(sci=np.concatenate([r.sci for r in refs]), err=np.concatenate([r.err for r in refs]),
                            dq=np.concatenate([r.dq for r in refs]), var={}, int_times=None)
    for m in asn.science:
        sci = read_calints(m.path)
        pm = read_psfmask(Path(str(m.path).replace("_calints.fits", "_calints_psfmask.fits")))
        out = align_refs(sci, stack, psfmask=pm)
        print(m.path.name, "shifts (dx, dy, scale):", np.round(out.shifts[0], 4).tolist())
        assert out.sci.shape == (1, 6, 320, 320) and np.isfinite(out.sci).all() and np.isfinite(out.err).all()
        assert np.abs(out.shifts[..., :2]).max() < 0.02
        assert (out.shifts[..., 2] > 1).all()             # AU Mic is brighter than every reference star
