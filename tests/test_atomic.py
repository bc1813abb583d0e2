"""Atomic products: a coron3 run killed (SIGKILL) at random moments never leaves a half product under a final name.

After every kill, every file under a product's final name opens, has the right shape, and holds finite data where
its DQ says so; temporary files never carry a product's name; a re-run replaces the products (new files, renamed
into place) and removes the temporary files the killed runs left; the inputs are byte-identical (sha256) after every run. Half the runs write slowly (a pause before each
HDU, injected into the child process) so that the kills land inside writes, not only between them.
"""
import hashlib, os, re, signal, subprocess, sys, time
from pathlib import Path

import numpy as np
import pytest

from coronlit.core import CoronlitError
from coronlit.dq import DO_NOT_USE
from coronlit.products import AlignedRefs, Exposure, Resampled, read_product
from coronlit.synth import make_dataset

BIN = Path(sys.executable).parent
ENV = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
SUFFIXES = ("crfints", "psfstack", "psfalign", "psfsub", "i2d")
PRODUCT = re.compile(rf".*_({'|'.join(SUFFIXES)})\.fits$")
ANALYSIS = re.compile(r".*_(companions\.ecsv|contrast_calibrated\.ecsv|contrast_calibrated\.png)$")  # written beside the _i2d
SLOW = """
import sys, time
from astropy.io.fits.hdu.base import _BaseHDU
_w = _BaseHDU._writeto
def slow(self, *a, **k):
    time.sleep(0.04); return _w(self, *a, **k)
_BaseHDU._writeto = slow
from coronlit.cli import main
sys.exit(main(sys.argv[1:]))
"""
NINTS, NREF, SHAPE = 3, 2, (64, 64)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("atomic")
    asn = make_dataset(d / "data", shape=SHAPE, nints=NINTS, n_sci=2, n_ref=NREF, seed=5)
    return asn


def _sha(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(folder).iterdir()) if p.is_file()}


def _cmd(asn, out, slow):
    args = ["-q", "coron3", str(asn), "-o", str(out), "--truncate", "4"]
    return ([sys.executable, "-c", SLOW] if slow else [str(BIN / "coronlit")]) + args


def _check_analysis(p):
    "A companions table, calibrated curve or its plot under its final name: whole (it parses), never half-written."
    if p.suffix == ".png":
        import matplotlib.image
        assert matplotlib.image.imread(p).shape[0] > 50, p.name
    else:
        from astropy.table import Table
        t = Table.read(p, format="ascii.ecsv")
        assert ("sep" in t.colnames and "flux_mjy" in t.colnames) if "companions" in p.name else len(t) > 3, (p.name, t.colnames)


def _check_product(p):
    "A file under a product's final name: it reads back whole, with the expected shape and finite good pixels."
    x = read_product(p)  # a CoronlitError here is a half-written product
    suffix = PRODUCT.match(p.name).group(1)
    if suffix == "i2d":
        assert isinstance(x, Resampled) and x.sci.ndim == 2
        assert np.isfinite(x.sci[x.wht > 0]).all() and (x.wht > 0).sum() > 1000, p.name
        return
    want = {"crfints": (NINTS, *SHAPE), "psfsub": (NINTS, *SHAPE), "psfstack": (NREF * NINTS, *SHAPE),
            "psfalign": (NINTS, NREF * NINTS, *SHAPE)}[suffix]
    assert x.sci.shape == want, (p.name, x.sci.shape)
    assert isinstance(x, AlignedRefs if suffix == "psfalign" else Exposure)
    good = (x.dq & DO_NOT_USE) == 0
    assert good.mean() > 0.5 and np.isfinite(x.sci[good]).all(), p.name


def _check_folder(out):
    "Every product complete and valid; anything else is a hidden temporary file that no product pattern matches."
    names = sorted(p.name for p in Path(out).iterdir()) if Path(out).is_dir() else []
    products = [n for n in names if PRODUCT.match(n)]
    for n in products: _check_product(Path(out) / n)
    for n in names:
        if ANALYSIS.match(n): _check_analysis(Path(out) / n)
    others = [n for n in names if n not in products and not ANALYSIS.match(n)]
    assert all(n.startswith(".") and n.endswith(".tmp") for n in others), others
    return products, others


def _inodes(folder):
    "Inodes of the products in `folder` (a product renamed into place gets a new one)."
    out = set()
    for q in Path(folder).glob("*.fits") if Path(folder).is_dir() else []:
        try:
            if PRODUCT.match(q.name): out.add(q.stat().st_ino)
        except FileNotFoundError: pass  # replaced between the listing and the stat
    return out


def _kill_during(p, folder, k, extra):
    "SIGKILL `p` `extra` seconds after its k-th product appeared in `folder` (products already there do not count)."
    old = _inodes(folder)
    while p.poll() is None and len(_inodes(folder) - old) < k: time.sleep(0.005)
    time.sleep(extra)
    if p.poll() is None: os.kill(p.pid, signal.SIGKILL)
    return p.wait(timeout=60)


def test_killed_runs_leave_only_whole_products(data, tmp_path):
    inputs = data.parent
    before = _sha(inputs)
    out = tmp_path / "out"
    # one complete run: how long it takes, and the reference list of products
    t0 = time.time()
    r = subprocess.run(_cmd(data, out, False), env=ENV, capture_output=True, text=True, timeout=300)
    full = time.time() - t0
    assert r.returncode == 0, r.stderr[-2000:]
    products, others = _check_folder(out)
    assert len(products) == 2 * 2 + 1 + 2 + 2 + 1 and not others, (products, others)  # crfints x4, psfstack, psfalign x2, psfsub x2, i2d
    assert sum(bool(ANALYSIS.match(p.name)) for p in Path(out).iterdir()) == 3   # companions table, calibrated curve, its plot
    assert _sha(inputs) == before
    inode = {n: (out / n).stat().st_ino for n in products}

    rng = np.random.default_rng(int(os.environ.get("CORONLIT_KILL_SEED", 2024)))
    kills, seen_tmp, replaced = [], 0, set()
    for run in range(12):
        slow = run % 2 == 1
        target = tmp_path / f"kill{run}" if run < 6 else out  # the last runs kill re-runs over complete products
        k, extra = int(rng.integers(0, len(products))), float(rng.uniform(0, 0.25 if slow else 0.1))
        p = subprocess.Popen(_cmd(data, target, slow), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rc = _kill_during(p, target, k, extra)  # at a random moment after a random number of products
        kills.append((run, k, round(extra, 3), rc))
        prods, tmps = _check_folder(target)
        seen_tmp += len(tmps)
        if target == out:
            assert len(prods) == len(products)  # a killed re-run leaves every earlier product in place, old or new
            replaced |= {n for n in prods if (out / n).stat().st_ino != inode[n]}
        assert _sha(inputs) == before, f"run {run}: an input changed"
    # a complete re-run over the leftovers replaces every product with a new file
    r = subprocess.run(_cmd(data, out, False), env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    prods, tmps = _check_folder(out)
    assert sorted(prods) == sorted(products)
    assert not tmps, f"the re-run left the killed runs' temporary files: {tmps}"
    assert all((out / n).stat().st_ino != inode[n] for n in prods), "a product was rewritten in place, not replaced"
    assert _sha(inputs) == before
    print(f"\nfull run {full:.1f} s; kills (run, after k products, + s, returncode): {kills}; "
          f"temporary files left by kills: {seen_tmp}; products replaced by killed re-runs: {len(replaced)}")
    assert sum(rc == -signal.SIGKILL for *_, rc in kills) >= 6, kills  # most runs were really killed mid-way
    assert seen_tmp >= 1, "no kill landed inside a write: the test did not test atomicity"


def test_rerun_replaces_atomically(data, tmp_path):
    "A reader holding a product open during a re-run keeps reading the old, complete file (rename, not rewrite)."
    out = tmp_path / "out"
    assert subprocess.run(_cmd(data, out, False), env=ENV, capture_output=True, timeout=300).returncode == 0
    i2d = next(out.glob("*_i2d.fits"))
    with open(i2d, "rb") as f:
        old = f.read()
        assert subprocess.run(_cmd(data, out, False), env=ENV, capture_output=True, timeout=300).returncode == 0
        f.seek(0); assert f.read() == old  # the open file is the old inode, untouched
    new = i2d.read_bytes()
    assert len(new) == len(old) and new != old  # the new product (its DATE differs) is a different file
    _check_folder(out)
