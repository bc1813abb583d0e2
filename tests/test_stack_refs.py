"""stack_refs: agreement with jwst 3.0.0's stack_refs (jwst.coron.stack_refs.make_cube) and error handling."""
import json
from pathlib import Path
import numpy as np
import pytest
from astropy.io import fits
from coronlit.core import DataError
from coronlit.products import Exposure, read_calints
from coronlit.stack_refs import stack_refs



def _exposure(rng, nints, shape=(40, 50), name="ref"):
    sci = rng.normal(100, 10, (nints,) + shape).astype(np.float32)
    sci[:, 3, 4] = np.nan
    err = rng.uniform(1, 2, sci.shape).astype(np.float32)
    dq = rng.integers(0, 4, sci.shape).astype(np.uint32)
    dq[:, 3, 4] |= 1
    return Exposure(sci=sci, err=err, dq=dq, primary=fits.Header({"TARGNAME": name}), header=fits.Header(),
                    var={"VAR_POISSON": err**2 / 2, "VAR_RNOISE": err**2 / 2}, path=Path(f"/x/{name}_calints.fits"))


def _jwst_stack(exposures):
    from stdatamodels.jwst import datamodels
    from jwst.coron.stack_refs import make_cube
    models = [datamodels.CubeModel(data=e.sci, err=e.err, dq=e.dq) for e in exposures]
    return make_cube(models)


@pytest.mark.jwst
def test_agrees_with_jwst_on_arrays():
    rng = np.random.default_rng(3)
    refs = [_exposure(rng, n, name=f"r{k}") for k, n in enumerate((3, 1, 4))]
    ours, theirs = stack_refs(refs), _jwst_stack(refs)
    assert ours.sci.shape == theirs.data.shape == (8, 40, 50)
    np.testing.assert_array_equal(ours.sci, theirs.data.astype(np.float32))
    np.testing.assert_array_equal(ours.err, theirs.err.astype(np.float32))
    np.testing.assert_array_equal(ours.dq, theirs.dq)
    assert ours.sci.dtype == np.float32 and ours.err.dtype == np.float32 and ours.dq.dtype == np.uint32
    assert ours.primary["TARGNAME"] == "r0"
    assert ours.var["VAR_POISSON"].shape == (8, 40, 50)


@pytest.mark.jwst
def test_agrees_with_jwst_on_real_references(aumic_dir, aumic_asn):
    DATA = aumic_dir
    asn = json.loads(aumic_asn.read_text())
    names = [m["expname"] for m in asn["products"][0]["members"] if m["exptype"] == "psf"]
    assert len(names) == 6
    refs = [read_calints(DATA / n) for n in names]
    # jwst on CubeModels of the same arrays (read_calints also sets DO_NOT_USE where SCI is NaN, so the DQ
    # of the files themselves can differ from these arrays in that bit)
    ours, theirs = stack_refs(refs), _jwst_stack(refs)
    assert ours.sci.shape == theirs.data.shape == (6, 320, 320), (ours.sci.shape, theirs.data.shape)
    np.testing.assert_array_equal(ours.sci, theirs.data.astype(np.float32))
    np.testing.assert_array_equal(ours.err, theirs.err.astype(np.float32))
    np.testing.assert_array_equal(ours.dq, theirs.dq)
    assert ours.primary.get("TARGNAME") == refs[0].primary.get("TARGNAME")
    # and SCI/ERR are the files' values, unchanged
    from stdatamodels.jwst import datamodels
    with datamodels.open(DATA / names[2]) as m:
        np.testing.assert_array_equal(ours.sci[2], m.data[0].astype(np.float32))
        np.testing.assert_array_equal(ours.err[2], m.err[0].astype(np.float32))


def test_shape_mismatch_names_the_file_and_both_shapes():
    rng = np.random.default_rng(0)
    refs = [_exposure(rng, 2, name="a"), _exposure(rng, 1, (40, 48), name="b")]
    with pytest.raises(DataError) as e:
        stack_refs(refs)
    msg = str(e.value)
    assert msg.startswith("/x/b_calints.fits:") and "(40, 48)" in msg and "(40, 50)" in msg, msg


def test_jwst_also_refuses_mismatched_shapes():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
        _jwst_stack([_exposure(rng, 2), _exposure(rng, 1, (40, 48))])


def test_empty_list():
    with pytest.raises(DataError, match="no reference PSF"):
        stack_refs([])
