"""coronlit's image3 against STScI's jwst 3.0.0 Image3Pipeline, run offline (bench/jwst_image3.py, in a subprocess) on
the same simulated set with the same reference files: alignment, outlier flags, flux and catalog scored against the
truth, and the products compared with each other."""
import glob, json, os, subprocess, sys
from pathlib import Path
import numpy as np
import pytest
from astropy.io import fits

from coronlit.impipeline import image3
from coronlit.imsynth import make_image_set, write_reference_files, read_truth
from coronlit.image3_metrics import alignment_rms, cr_scores, flux_ratios, catalog_scores
from coronlit.dq import OUTLIER

pytestmark = pytest.mark.jwst
pytest.importorskip("jwst")
ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    "A 4 x 224x224 set reduced by coronlit (in process) and by jwst (subprocess); their scores."
    d = tmp_path_factory.mktemp("image3_vs_jwst")
    asn = make_image_set(d / "data", n_exp=4, shape=(224, 224), seed=11, nstars=60, ngal=12)
    apf, abf = write_reference_files(d / "ref")
    res = image3(asn, d / "coronlit", apcorr=str(apf), abvegaoffset=str(abf))
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "jwst_image3.py"), str(asn), str(d / "jwst"), "--apcorr", str(apf),
                        "--abvegaoffset", str(abf)], capture_output=True, text=True, env=ENV, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    truth = read_truth(asn)
    out = {}
    for name in ("coronlit", "jwst"):
        f = lambda s, e="fits": sorted(glob.glob(str(d / name / f"*_{s}.{e}")))
        out[name] = dict(crf=f("crf"), i2d=f("i2d")[0], cat=f("cat", "ecsv")[0])
    for name, other in (("coronlit", "jwst"), ("jwst", "coronlit")):
        p = out[name]
        p["align"] = alignment_rms(p["crf"], truth); p["cr"] = cr_scores(p["crf"], truth)
        p["flux"] = float(np.median(flux_ratios(p["i2d"], truth, 1e-6)))
        p["cat_scores"] = catalog_scores(p["cat"], p["i2d"], truth, also=out[other]["i2d"])
    print(json.dumps({k: {kk: v[kk] for kk in ("align", "cr", "flux", "cat_scores")} for k, v in out.items()}, indent=1))
    return out


def test_same_products(both):
    c, j = both["coronlit"], both["jwst"]
    assert [Path(p).name for p in c["crf"]] == [Path(p).name for p in j["crf"]]
    assert Path(c["i2d"]).name == Path(j["i2d"]).name and Path(c["cat"]).name == Path(j["cat"]).name


def test_alignment_at_least_jwst(both):
    "Relative rms no worse than jwst's; absolute (the reference exposure's pointing, kept by both) within 5 mas of it."
    c, j = both["coronlit"]["align"], both["jwst"]["align"]
    assert c["relative"] <= j["relative"], (c, j)
    assert c["absolute"] <= j["absolute"] + 0.005, (c, j)


def test_outliers_recall_and_false_flags(both):
    c, j = both["coronlit"]["cr"], both["jwst"]["cr"]
    assert c["recall"] >= 0.98 and c["recall"] >= j["recall"] - 0.005, (c, j)
    assert c["false"] <= j["false"], (c, j)


def test_same_flags_on_the_same_data(both):
    """The pixels coronlit flags, jwst flags too (95%), exposure by exposure: the same test on the same data. jwst flags
    more (measured 33 vs 12 false flags over the set, and the same recall): its extra flags are not cosmic rays."""
    for pc, pj in zip(both["coronlit"]["crf"], both["jwst"]["crf"]):
        fc = (fits.getdata(pc, "DQ") & OUTLIER) != 0; fj = (fits.getdata(pj, "DQ") & OUTLIER) != 0
        assert (fc & fj).sum() >= 0.95 * fc.sum(), (Path(pc).name, int(fc.sum()), int(fj.sum()), int((fc & fj).sum()))


def test_flux_conserved(both):
    assert abs(both["coronlit"]["flux"] - 1) < 0.005, both["coronlit"]["flux"]


def test_catalog_against_truth(both):
    """Photometric scatter no larger than jwst's and no bias; completeness and purity within two sources of jwst's.
    Measured (seed 11): completeness 0.712 both, purity 0.977 vs 1.000 (one spurious source of 43), scatter 0.9% vs 2.0%.
    (alignment relative rms 2.6 vs 2.8 mas, absolute 0.323" both; CR recall 0.995 both; flux 0.9994 vs 1.0007)
    The two find the same sources but for a few at the threshold: their mosaics' pixel grids differ (north up vs
    detector-aligned), so is the noise at a faint source."""
    c, j = both["coronlit"]["cat_scores"], both["jwst"]["cat_scores"]
    assert c["purity"] >= j["purity"] - 2.0 / c["n_cat"], (c, j)
    assert c["scatter"] <= j["scatter"] * 1.05 and abs(c["bias"]) < 0.01, (c, j)
    assert c["completeness"] >= j["completeness"] - 2.0 / c["n_true"], (c, j)
