"""Batches on Dask: identical products whichever scheduler ran them, failures isolated and reported, tcp:// clusters,
progress over the whole batch, and the intra-association mapper."""
import dataclasses, functools, json, os, subprocess, sys
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
from astropy.io import fits

import coronlit
from coronlit.asn import read_asn
from coronlit.batch import coron3_many, dask_mapper
from coronlit.synth import make_dataset

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
OPTS = dict(truncate=6)
cloudpickle.register_pickle_by_value(sys.modules[__name__])   # the toy classes below travel to the workers by value


def _arrays(path):
    "Every data array of a FITS product, by extension name."
    with fits.open(path) as h:
        return {(x.name, x.ver): (np.array(x.data) if x.data is not None else None) for x in h[1:] if x.name != "ASDF"}


def _same_products(a, b):
    "Assert two product folders (recursively) hold the same files with bit-identical data arrays; return the count."
    fa = sorted(str(p.relative_to(a)) for p in Path(a).rglob("*.fits"))
    fb = sorted(str(p.relative_to(b)) for p in Path(b).rglob("*.fits"))
    assert fa == fb and fa, (fa, fb)
    for n in fa:
        xa, xb = _arrays(Path(a) / n), _arrays(Path(b) / n)
        assert xa.keys() == xb.keys(), n
        for k in xa:
            if xa[k] is None: continue
            assert xa[k].tobytes() == xb[k].tobytes(), f"{n} {k} differs"
    return len(fa)


@pytest.fixture(scope="module")
def asns(tmp_path_factory):
    "Three small simulated associations (different seeds, same product name) and a broken one (missing member)."
    d = tmp_path_factory.mktemp("batch")
    good = [make_dataset(d / f"a{i}", shape=(96, 96), nints=3, seed=20 + i) for i in range(3)]
    broken = make_dataset(d / "broken", shape=(96, 96), nints=3, seed=29)
    (broken.parent / read_asn(broken).science[0].path.name).unlink()
    return good, broken


@pytest.fixture(scope="module")
def cluster():
    "A 2-worker LocalCluster of our own, reached by its address like a remote one."
    from distributed import LocalCluster
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        yield c


def test_identical_local_cluster_vs_serial(asns, tmp_path):
    "The same batch in this process and on a 2-worker LocalCluster: the same files, bit for bit."
    good, _ = asns
    serial = coron3_many(good, tmp_path / "serial", progress=False, **OPTS)
    dask = coron3_many(good, tmp_path / "dask", scheduler="local:2", progress=False, **OPTS)
    assert serial.exit_status == dask.exit_status == 0
    assert [s.output_dir.name for s in serial] == [s.output_dir.name for s in dask]
    assert len({s.output_dir for s in dask}) == 3                      # same product name: -2, -3 suffixes
    assert _same_products(tmp_path / "serial", tmp_path / "dask") == 3 * 10
    # the serial batch is coron3 itself
    coronlit.coron3(good[0], tmp_path / "plain", progress=False, **OPTS)
    assert _same_products(tmp_path / "plain", serial[0].output_dir) == 10
    assert len({s.worker for s in serial}) == 1 and all(s.seconds > 0 for s in dask)


def test_failure_isolated_cli(asns, tmp_path):
    "CLI on a local cluster: a broken association among good ones fails alone, is reported at the end, exit 2; progress over the batch."
    good, broken = asns
    out = tmp_path / "out"
    r = subprocess.run([str(BIN / "coronlit"), "coron3", str(good[0]), str(broken), str(good[1]), "-o", str(out),
                        "--scheduler", "local:2", "--truncate", "6"], capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.splitlines()
    assert lines[-1] == "coronlit: 1 of 3 associations failed", r.stderr
    missing = read_asn(good[0]).science[0].path.name          # same member names in every simulated dataset
    errors = [l for l in lines if l.startswith("coronlit: error:")]
    assert len(errors) == 1 and missing in errors[0] and str(broken.parent) in errors[0], errors
    assert "Traceback" not in r.stderr
    assert "associations: 100%" in r.stderr and "3/3" in r.stderr     # one progress bar over the whole batch
    written = [Path(l) for l in r.stdout.split()]
    assert len(written) == 26 and all(p.is_file() for p in written)    # 10 products + companions ECSV, curve ECSV, PNG each
    pn = read_asn(good[0]).product_name
    assert {p.parent.name for p in written} == {pn, f"{pn}-2"}           # the broken one's folder stays empty


def test_internal_error_exit_status(asns, tmp_path, monkeypatch):
    "A failure that is not a CoronlitError (a bug) is recorded with its traceback, the others go on, exit status 1."
    import coronlit.pipeline
    good, broken = asns
    real = coronlit.pipeline.coron3
    @functools.wraps(real)                                   # same signature: the options are checked against it
    def buggy(asn, *a, **k):
        if Path(asn) == Path(good[0]): return 1 / 0
        return real(asn, *a, **k)
    monkeypatch.setattr(coronlit.pipeline, "coron3", buggy)
    res = coron3_many([good[0], broken, good[1]], tmp_path, progress=False, **OPTS)
    assert [s.ok for s in res] == [False, False, True] and res.exit_status == 1
    assert res[0].internal and res[0].error == "ZeroDivisionError: division by zero" and "Traceback" in res[0].traceback
    assert not res[1].internal


def test_tcp_scheduler(asns, cluster, tmp_path):
    "An existing cluster by its tcp:// address (API and CLI): products identical to the serial run; the cluster stays up."
    good, broken = asns
    addr = cluster.scheduler_address
    assert addr.startswith("tcp://")
    res = coron3_many(good[:2] + [broken], tmp_path / "tcp", scheduler=addr, progress=False, **OPTS)
    assert [s.ok for s in res] == [True, True, False] and res.exit_status == 2 and res.scheduler == addr
    serial = coron3_many(good[:2], tmp_path / "serial", progress=False, **OPTS)
    for s, t in zip(serial, res): assert _same_products(s.output_dir, t.output_dir) == 10
    assert len(cluster.scheduler_info["workers"]) == 2                 # still there
    fan = coron3_many(good[:2], tmp_path / "fan", scheduler=addr, fanout=True, progress=False, **OPTS)
    for s, t in zip(serial, fan): assert _same_products(s.output_dir, t.output_dir) == 10
    assert {t.worker for t in fan} == {serial[0].worker}                # fan-out: each association driven from here
    r = subprocess.run([str(BIN / "coronlit"), "-q", "coron3", str(good[2]), "-o", str(tmp_path / "cli"), "--scheduler", addr,
                        "--truncate", "6"], capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.split()) == 13 and all(Path(l).parent == tmp_path / "cli" for l in r.stdout.split())  # + companions x3


def test_unreachable_scheduler(asns, tmp_path):
    "A scheduler address nobody listens on: exit 2 and one line naming the address."
    r = subprocess.run([str(BIN / "coronlit"), "-q", "coron3", str(asns[0][0]), "-o", str(tmp_path), "--scheduler", "tcp://127.0.0.1:9"],
                       capture_output=True, text=True, env={**ENV, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"}, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("coronlit: error: cannot connect to the Dask scheduler at tcp://127.0.0.1:9"), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@dataclasses.dataclass
class Library:
    "A toy reference library that counts its unpickling in each process."
    refs: np.ndarray
    loads = 0
    def __setstate__(self, state):
        type(self).loads += 1
        self.__dict__.update(state)


def project(i, lib):
    "A toy per-integration task: project reference i on all others (BLAS and reductions)."
    r = lib.refs.reshape(len(lib.refs), -1)
    return (r @ r[i]) / r[i].sum(), os.getpid(), id(lib), type(lib).loads


def test_dask_mapper_shares_once(cluster):
    "dask_mapper: results bit-identical and in order; the library is sent once per worker, not once per task."
    from distributed import Client
    lib = Library(np.random.default_rng(3).normal(size=(40, 160, 160)))        # 8 MB
    serial = [project(i, lib)[0] for i in range(40)]
    with Client(cluster) as client:
        out = dask_mapper(client)(project, range(40), lib)
        for _ in range(50):
            if not client.who_has(): break
            import time; time.sleep(0.05)
        assert client.who_has() == {}                                   # released afterwards
    assert all(a.tobytes() == b[0].tobytes() for a, b in zip(serial, out))
    per_worker = {}
    for _, pid, oid, loads in out: per_worker.setdefault(pid, set()).add((oid, loads))
    assert len(per_worker) == 2                                        # both workers worked
    assert all(len({oid for oid, _ in v}) == 1 for v in per_worker.values())   # one copy per worker...
    assert max(l for _, _, _, l in out) <= 2                           # ...unpickled once (twice on the relaying worker)


def test_coron3_mapper_identical(asns, cluster, tmp_path):
    "coron3(..., mapper=dask_mapper(client)) and the papermill notebook with a scheduler write the same products as the serial run."
    from coronlit.batch import _coron3_has_mapper
    if not _coron3_has_mapper(): pytest.skip("coron3 has no mapper= keyword yet")
    from distributed import Client
    good, _ = asns
    coronlit.coron3(good[0], tmp_path / "serial", progress=False, **OPTS)
    with Client(cluster) as client:
        coronlit.coron3(good[0], tmp_path / "fan", progress=False, mapper=dask_mapper(client), **OPTS)
    assert _same_products(tmp_path / "serial", tmp_path / "fan") == 10
    # the papermill notebook's scheduler parameter (coron3_on: fan-out on the cluster at that address)
    r = subprocess.run([str(BIN / "papermill"), str(ROOT / "coron3.ipynb"), str(tmp_path / "out.ipynb"), "-p", "asn", str(good[0]),
                        "-p", "output_dir", str(tmp_path / "nb"), "-p", "truncate", "6", "-p", "scheduler", cluster.scheduler_address,
                        "--cwd", str(tmp_path)], capture_output=True, text=True, env=ENV, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert _same_products(tmp_path / "serial", tmp_path / "nb") == 10
