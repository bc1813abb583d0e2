"Companions (issue 15): forward-model fits against truth, no false candidates, AU Mic, bad inputs."
import math
from pathlib import Path
import numpy as np
import pytest
from astropy.table import Table
from coronlit.core import DataError, InputError, OutputError
from coronlit.synth import make_dataset, load_truth, geometry, make_optics, image, wavefront
from coronlit.pipeline import coron3
from coronlit.combine import prepare, reduce
from coronlit.contrast import synth_psf, inject, sky_position
from coronlit.psfmodel import synth_offaxis, offaxis_psf, psf_for_header, _lyot_fraction
from coronlit import companions as C

def _lyot(truth):
    g = geometry(truth["instrument"], tuple(truth["shape"]))
    return _lyot_fraction(make_optics(g, np.random.default_rng(np.random.SeedSequence(truth["seed"]).spawn(1)[0])))

@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    "A 128x128 two-roll NIRCam set with a companion of contrast 1e-4 at 1.2 arcsec, reduced in memory."
    d = tmp_path_factory.mktemp("comp") / "d"
    asn = make_dataset(d, shape=(128, 128), nints=2, seed=5, companion=dict(sep=1.2, pa=140.0, contrast=1e-4))
    truth = load_truth(d)
    return truth, coron3(asn, None, progress=False)

def test_psf_model_renders_like_the_simulator(sim):
    "The Fourier-shifted stamp equals the simulator's own image of a source at a sub-pixel position."
    truth, _ = sim
    p = synth_offaxis(truth, size=32)
    g = geometry(truth["instrument"], tuple(truth["shape"]))
    for k, v in truth["parameters"].items():
        if k in g and k not in ("shape", "center") and not isinstance(v, (list, dict)): g[k] = v
    o = make_optics(g, np.random.default_rng(np.random.SeedSequence(truth["seed"]).spawn(1)[0]))
    xy = (g["center"][0] + 20.37, g["center"][1] - 11.81)
    ref = image(o, wavefront(o, g["wfe_static"], np.zeros(8), np.zeros(len(o.high))), xy, coronagraph=False) / _lyot_fraction(o)
    mine = p.at(ref.shape, xy)
    box = np.s_[int(xy[1]) - 8:int(xy[1]) + 9, int(xy[0]) - 8:int(xy[0]) + 9]
    assert np.abs(mine[box] - ref[box]).max() < 2e-3 * ref.max()

def test_forward_model_is_exact_through_klip(sim):
    "A companion alone through coronlit's KLIP and roll combination is fitted back to 1e-4 in flux and < 0.1 mas."
    truth, res = sim
    p = prepare(res); psf = synth_offaxis(truth, size=32)
    unit = truth["star"]["flux_e"] * truth["units"]["mjysr_per_electron"]
    star = p.science[0].star_radec
    ra, dec = sky_position(star, 0.7, 250.0)
    sci = [inject(e.replace(sci=np.zeros_like(e.sci)), [(ra, dec, 1e-4)], synth_psf(truth), unit, p.psfmask) for e in p.science]
    ctx = C.context((p, reduce(p, "rdi", [50], science=sci)), psf=psf)
    e0, n0 = 0.7 * math.sin(math.radians(250)), 0.7 * math.cos(math.radians(250))
    f = C.fit_source(ctx.rolls, psf, star, e0 + 0.02, n0 - 0.01)
    assert abs(f.flux / (1e-4 * unit * _lyot(truth)) - 1) < 1e-4
    assert math.hypot(f.e - e0, f.n - n0) * 1e3 < 0.1
    assert abs(f.q) < 1e-3

def test_characterize_finds_and_measures_the_companion(sim, tmp_path):
    "The simulated companion is the only candidate; position and flux agree with the truth within 3 sigma."
    truth, res = sim
    psf = synth_offaxis(truth, size=32)
    unit = truth["star"]["flux_e"] * truth["units"]["mjysr_per_electron"]
    ctx = C.context(res, psf=psf)
    star_mjy = unit * _lyot(truth) * ctx.mjy_per_unit
    tab = C.characterize(ctx, star_flux_mjy=star_mjy, n_inject=8, star_err_mas=4.5)
    assert len(tab) == 1 and tab["kind"][0] == "candidate"
    r = tab[0]
    assert abs(r["sep"] - 1.2) < 3 * r["sep_err"] and 0.002 < r["sep_err"] < 0.03
    assert abs((r["pa"] - 140 + 180) % 360 - 180) < 3 * r["pa_err"]
    assert abs(r["contrast"] - 1e-4) < 3 * r["contrast_err"] and r["contrast_err"] < 3e-5
    tr = np.mean(list(truth["companion"]["transmission"].values()))
    assert abs(r["transmission"] - tr) < 0.01
    assert r["snr"] > 5 and r["q"] < 0.25
    p = C.write_companions(tab, tmp_path / f"{res.asn.product_name}_companions.ecsv")
    back = Table.read(p)
    assert back.colnames[:15] == list(C.COLUMNS) and back["sep"].unit == "arcsec"
    assert back.meta["klip_mode"] == "rdi" and "injection" in back.meta["errors"]

def test_no_false_candidates_without_a_companion(tmp_path):
    "No candidate above 5 sigma in a simulated set without a companion."
    asn = make_dataset(tmp_path / "d", shape=(128, 128), nints=2, seed=8, companion=None)
    truth = load_truth(tmp_path / "d")
    tab = C.characterize(coron3(asn, None, progress=False), psf=synth_offaxis(truth, size=32), n_inject=4)
    assert len(tab) == 0

def test_aumic_disk_is_not_a_companion(aumic_asn):
    "AU Mic F356W: no candidate on the disk (its peaks fail the point-source test); the calibrated curve is drawn."
    res = coron3(aumic_asn, None, progress=False)
    ctx = C.context(res)
    tab = C.characterize(ctx, n_inject=6)
    for r in tab:                               # nothing within 0.4 arcsec of the disk's spine (PA 128.6 deg)
        off = r["sep"] * abs(math.sin(math.radians(r["pa"] - 128.6)))
        assert off > 0.4, f"candidate on the disk: {dict(zip(tab.colnames, r))}"
    assert len(tab) <= 1
    cur = C.calibrated_curve(ctx, star_mag=4.4, zero_point_jy=280.9, n_pa=4)
    assert np.isfinite(cur["flux_limit_mjy"]).all() and (cur["transmission"] <= 1.0001).all()
    assert cur["transmission"][0] < 0.75 and (cur["flux_limit_mjy"] >= cur["flux_limit_mjy_uncorrected"] * 0.999).all()
    c1 = float(np.interp(1.0, cur["sep_arcsec"], cur["contrast"]))
    assert 1e-7 < c1 < 1e-4

def test_bad_inputs(sim, tmp_path):
    "Clear errors from the coronlit family, naming what is wrong."
    truth, res = sim
    with pytest.raises(DataError, match="BUNIT"): C.mjy_per_unit({"BUNIT": "electrons", "PIXAR_SR": 1e-13})
    with pytest.raises(InputError, match="zero point"): C.star_flux(mag=5.0)
    with pytest.raises(DataError, match="_i2d"): C.context(type(res)(asn=res.asn, psfsub=res.psfsub, psfalign=res.psfalign))
    with pytest.raises(OutputError, match="does not exist"):
        C.write_companions(Table({"id": [1]}), tmp_path / "missing" / "x_companions.ecsv")
    with pytest.raises(InputError, match="no bandpass"): offaxis_psf("NIRCAM", "F999W")
    try: import stpsf  # noqa: F401
    except ImportError:
        with pytest.raises(InputError, match="not installed"):
            psf_for_header({"INSTRUME": "NIRCAM", "FILTER": "F356W"}, 0.063, method="stpsf")

def test_write_products_beside_the_i2d(sim, tmp_path):
    "With products on disk (memory-mapped _psfalign): the companions ECSV, the calibrated curve and its plot beside the _i2d."
    truth, mem = sim
    res = coron3(mem.asn.path, tmp_path, progress=False)
    paths = C.write_products(res, tmp_path, companions=[(0.8, 20.0)], psf=synth_offaxis(truth, size=32), n_inject=4)
    name = res.asn.product_name
    assert paths["companions"] == tmp_path / f"{name}_companions.ecsv" and (tmp_path / f"{name}_i2d.fits").is_file()
    tab, cur = Table.read(paths["companions"]), Table.read(paths["contrast"])
    assert list(tab["kind"]) == ["fixed", "candidate"] and abs(tab["sep"][1] - 1.2) < 0.02
    k = int(np.argmin(np.abs(cur["sep_arcsec"] - 1.2)))          # the companion is masked out of the curve's noise
    assert cur["flux_limit_mjy"][k] < 0.2 * tab["flux_mjy"][1]
    assert paths["plot"].stat().st_size > 10000 and not list(tmp_path.glob(".*.tmp"))
    again = C.characterize(C.from_products(mem.asn.path, tmp_path), psf=synth_offaxis(truth, size=32), n_inject=4)
    assert len(again) == 1 and abs(again["sep"][0] - tab["sep"][1]) < 1e-6    # the same from the files alone
