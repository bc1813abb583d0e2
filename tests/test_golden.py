"""Nothing changes for users: coron3's products are compared with fingerprints of products written before the pipeline
layer was redesigned (issue 13; tests/data/golden_*.json, written by tests/_golden.py at the commit they name).
RDI products must be bit-identical; ADI and RDI+ADI (now through the block engine) agree to float32 rounding."""
import json
from pathlib import Path
import numpy as np
import pytest
import coronlit
from _golden import SYNTH, folder_fingerprint, memory_fingerprint, array_samples

DATA = Path(__file__).parent / "data"

def _close_samples(new, old, what, peak):
    """Same NaN pixels; values at the stored pixels agree to float32 rounding of the starlight subtracted (2e-6 of the
    science's brightest pixel: ~17 float32 steps); the image's spread (a figure of merit) to 1e-4."""
    assert new["nnan"] == old["nnan"], (what, new["nnan"], old["nnan"])
    assert new["idx"] == old["idx"], what
    np.testing.assert_allclose(new["values"], old["values"], rtol=0, atol=2e-6 * peak, err_msg=what)
    np.testing.assert_allclose(new["mean"], old["mean"], rtol=0, atol=2e-6 * peak, err_msg=what)
    np.testing.assert_allclose(new["std"], old["std"], rtol=1e-4, err_msg=what)

def _peak(res):
    "The brightest science pixel of a run (what KLIP subtracts sets the scale of float32 rounding)."
    return max(float(np.nanmax(np.abs(e.sci))) for e in res.crfints.values())

@pytest.fixture(scope="module")
def synth_asn(tmp_path_factory):
    from coronlit.synth import make_dataset
    return make_dataset(tmp_path_factory.mktemp("golden") / "data", **SYNTH)

GOLD = json.loads((DATA / "golden_synth.json").read_text())

@pytest.mark.parametrize("label", list(GOLD["runs"]))
def test_synth_products_unchanged(synth_asn, tmp_path, label):
    "Every product array of every run on the simulated set: RDI bit-identical; ADI modes to float32 rounding."
    g = GOLD["runs"][label]
    res = coronlit.coron3(synth_asn, tmp_path, progress=False, **g["kw"])
    files = folder_fingerprint(tmp_path)
    assert sorted(files) == sorted(g["files"]), label
    if "samples" not in g:
        assert files == g["files"], label
        assert memory_fingerprint(res) == g["memory"], label
        return
    peak = _peak(res)
    for k, s in res.psfsub.items(): _close_samples(array_samples((s[-1] if isinstance(s, list) else s).sci), g["samples"][k], k, peak)
    _close_samples(array_samples(res.i2d.sci), g["samples"]["i2d"], "i2d", peak)
    # the files that do not depend on the mode (crfints, psfstack, psfalign) stay bit-identical
    for name, fp in g["files"].items():
        if not name.endswith(("_psfsub.fits", "_i2d.fits")): assert files[name] == fp, name

def test_aumic_products_unchanged(aumic_asn, tmp_path):
    "AU Mic: RDI products bit-identical to the golden ones; ADI and RDI+ADI to float32 rounding."
    g = json.loads((DATA / "golden_aumic.json").read_text())
    asn = aumic_asn
    res = coronlit.coron3(asn, tmp_path, progress=False)
    assert folder_fingerprint(tmp_path) == g["files"]
    assert memory_fingerprint(res) == g["memory"]
    for mode in ("adi", "rdi+adi"):
        r = coronlit.coron3(asn, None, progress=False, mode=mode)
        for k, s in r.psfsub.items(): _close_samples(array_samples(s.sci), g[mode][k], f"{mode} {k}", _peak(r))
        _close_samples(array_samples(r.i2d.sci), g[mode]["i2d"], f"{mode} i2d", _peak(r))
