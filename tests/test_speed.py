"""Speed and memory: streamed _psfalign, bounded memory, identical results whatever the threads, mapper or blocks."""
import json, os, subprocess, sys, time
from pathlib import Path
import numpy as np
import pytest

import coronlit
from coronlit.synth import make_dataset
from coronlit.pipeline import coron3, thread_mapper, serial_mapper
from coronlit.products import read_product, read_calints, read_psfmask
from coronlit.align_refs import align_refs

ENV = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("speed")
    return make_dataset(d / "data", shape=(128, 128), nints=5, seed=21)


def _products(folder):
    "Every product's data arrays, by file name and extension."
    from astropy.io import fits
    out = {}
    for p in sorted(Path(folder).glob("*.fits")):
        with fits.open(p) as h:
            out[p.name] = {x.name: np.array(x.data) for x in h[1:] if x.data is not None and not x.data.dtype.names}
    return out


def test_threads_blocks_mappers_identical(data, tmp_path):
    "1 thread, 2 threads with one-integration blocks, and an explicit mapper: the same files, bit for bit."
    runs = {"serial": dict(), "threads": dict(workers=2, block_mb=0.01), "mapper": dict(mapper=thread_mapper(3), block_mb=0.3)}
    prods = {k: _products(coron3(data, tmp_path / k, truncate=8, progress=False, **kw).paths["i2d"][0].parent)
             for k, kw in runs.items()}
    ref = prods["serial"]
    assert len(ref) == 10                       # 4 crfints, psfstack, 2 psfalign, 2 psfsub, i2d
    for k in ("threads", "mapper"):
        assert prods[k].keys() == ref.keys()
        for name in ref:
            for ext in ref[name]: np.testing.assert_array_equal(prods[k][name][ext], ref[name][ext], err_msg=f"{k} {name} {ext}")


def test_fft_threads_identical(data):
    "FFT threads inside align_refs change nothing either."
    from coronlit.asn import read_asn
    asn = read_asn(data)
    sci = read_calints(asn.science[0].path)
    stack = read_calints(asn.psf[0].path)
    a1, a2 = align_refs(sci, stack), align_refs(sci, stack, workers=2)
    np.testing.assert_array_equal(a1.sci, a2.sci); np.testing.assert_array_equal(a1.shifts, a2.shifts)


def test_compose_agrees_with_pair_fits(data):
    "Composed shifts e_m + f_n agree with each pair's own Gauss-Newton fit on simulated NIRCam data."
    from coronlit.asn import read_asn
    asn = read_asn(data)
    pm = read_psfmask(next(Path(data).parent.glob("*psfmask.fits")))
    sci, stack = read_calints(asn.science[1].path), read_calints(asn.psf[1].path)
    c, f = align_refs(sci, stack, psfmask=pm), align_refs(sci, stack, psfmask=pm, method="fit")
    d = np.abs(c.shifts[..., :2] - f.shifts[..., :2])
    print(f"compose vs fit: max {d.max():.4f} px, rms {np.sqrt((d ** 2).mean()):.4f} px")
    assert d.max() < 0.01
    np.testing.assert_allclose(c.shifts[..., 2], f.shifts[..., 2], rtol=2e-3)


_CHILD = """
import json, resource, sys, time
import coronlit
t = time.process_time()
r = coronlit.coron3(sys.argv[1], sys.argv[2], truncate=8, progress=False, block_mb=float(sys.argv[3]))
print(json.dumps(dict(rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, cpu=time.process_time() - t,
                      psfalign=sum(p.stat().st_size for p in r.paths["psfalign"]))))
"""


@pytest.mark.slow
def test_memory_bounded_by_blocks(tmp_path):
    "8x the integrations (64x the _psfalign bytes): peak memory grows with the inputs, far less than the product."
    runs = {}
    for nints in (4, 32):
        asn = make_dataset(tmp_path / f"d{nints}", shape=(128, 128), nints=nints, n_sci=1, n_ref=4, seed=5)
        # via a small trampoline process: Linux would pass pytest's own peak RSS on to a direct child
        r = subprocess.run([sys.executable, "-c", "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))",
                            sys.executable, "-c", _CHILD, str(asn), str(tmp_path / f"o{nints}"), "16"],
                           capture_output=True, text=True, env=ENV, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        runs[nints] = json.loads(r.stdout.strip().splitlines()[-1])
    small, big = runs[4], runs[32]
    grow = big["rss"] - small["rss"]
    print(f"psfalign {small['psfalign'] / 1e6:.0f} -> {big['psfalign'] / 1e6:.0f} MB; peak RSS "
          f"{small['rss'] / 1e6:.0f} -> {big['rss'] / 1e6:.0f} MB; CPU {small['cpu']:.1f} -> {big['cpu']:.1f} s")
    assert big["psfalign"] > 60 * small["psfalign"]
    # holding the 4-D SCI and ERR in memory would need 2/3 of the file's growth; streaming needs the inputs' growth
    assert grow < 0.4 * (big["psfalign"] - small["psfalign"])
    assert big["rss"] < 600e6                     # a few blocks and the inputs, not pytest's memory
