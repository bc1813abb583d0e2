"""Benchmark: a batch of simulated associations in this process vs on a 2-worker Dask LocalCluster, and one
association's per-integration work (fan-out) in this process vs on the cluster.

Usage: python bench/bench_batch.py [--n 8] [--shape 160] [--nints 4] [--repeat 2] [--out bench/results/bench_batch.json]

Prints the wall times and speedups and writes them as JSON. Every run's products are checked to be bit-identical
to the serial run's. Set OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 (the workers get that from Dask anyway).
"""
import argparse, json, os, platform, shutil, sys, tempfile, time
from pathlib import Path

import numpy as np
from astropy.io import fits

import coronlit
from coronlit.batch import coron3_many, dask_client, dask_mapper
from coronlit.synth import make_dataset

ROOT = Path(__file__).resolve().parents[1]


def same_products(a, b):
    "True if two product folders hold the same FITS files with bit-identical data arrays."
    fa = sorted(p.relative_to(a) for p in Path(a).rglob("*.fits"))
    if fa != sorted(p.relative_to(b) for p in Path(b).rglob("*.fits")) or not fa: return False
    for n in fa:
        with fits.open(Path(a) / n) as x, fits.open(Path(b) / n) as y:
            for hx, hy in zip(x[1:], y[1:]):
                if hx.name == "ASDF" or hx.data is None: continue
                if np.asarray(hx.data).tobytes() != np.asarray(hy.data).tobytes(): return False
    return True


def timed(f):
    "Wall seconds of f() and its result."
    t = time.perf_counter(); r = f(); return time.perf_counter() - t, r


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=8, help="associations in the batch (default 8)")
    p.add_argument("--shape", type=int, default=160, help="image size in pixels (default 160)")
    p.add_argument("--nints", type=int, default=4, help="integrations per exposure (default 4)")
    p.add_argument("--fan-nints", type=int, default=16, help="integrations per exposure of the fan-out association (default 16)")
    p.add_argument("--workers", type=int, default=2, help="Dask workers (default 2)")
    p.add_argument("--repeat", type=int, default=2, help="runs of each configuration; the fastest is reported (default 2)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "bench_batch.json"), help="JSON results file")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_batch_") as td:    # products are big (GBs at 320x320): always removed
        return run(a, Path(td))


def run(a, tmp):
    "The measurements, with data and products under `tmp` (each cluster run's products deleted once compared)."
    opts = dict(truncate=10)
    asns = [make_dataset(tmp / "data" / f"a{i}", shape=(a.shape, a.shape), nints=a.nints, seed=100 + i) for i in range(a.n)]
    fan = make_dataset(tmp / "data" / "fan", shape=(a.shape, a.shape), nints=a.fan_nints, n_ref=4, seed=200)
    spec = f"local:{a.workers}"
    r = dict(n_associations=a.n, shape=[a.shape, a.shape], nints=a.nints, n_sci=2, n_ref=2, workers=a.workers,
             threads_per_worker=1, repeat=a.repeat, cpu_count=os.cpu_count(), load_avg_before=os.getloadavg(),
             python=platform.python_version(), coronlit=coronlit.__version__, options=opts)

    # 1. the batch: one association per task
    serial, cluster, startup = [], [], []
    for k in range(a.repeat):
        t, res = timed(lambda: coron3_many(asns, tmp / f"serial{k}", progress=False, **opts))
        assert res.exit_status == 0, res.failed
        serial.append(t)
        t0 = time.perf_counter()
        with dask_client(spec) as client:
            startup.append(time.perf_counter() - t0)
            t, res = timed(lambda: coron3_many(asns, tmp / f"dask{k}", scheduler=client, progress=False, **opts))
        assert res.exit_status == 0, res.failed
        cluster.append(t)
        assert same_products(tmp / "serial0", tmp / f"dask{k}"), "cluster products differ from the serial ones"
        shutil.rmtree(tmp / f"dask{k}")
        if k: shutil.rmtree(tmp / f"serial{k}")
    r["batch"] = dict(serial_s=serial, cluster_s=cluster, cluster_startup_s=startup,
                      serial_best_s=min(serial), cluster_best_s=min(cluster),
                      speedup=min(serial) / min(cluster), speedup_with_startup=min(serial) / (min(cluster) + min(startup)),
                      per_association_serial_s=min(serial) / a.n, identical=True)

    # 2. one association, its per-integration blocks fanned out over the workers
    fs, fc = [], []
    for k in range(a.repeat):
        t, _ = timed(lambda: coronlit.coron3(fan, tmp / f"fan_serial{k}", progress=False, **opts)); fs.append(t)
        with dask_client(spec) as client:
            t, _ = timed(lambda: coronlit.coron3(fan, tmp / f"fan_dask{k}", progress=False, mapper=dask_mapper(client), **opts))
        fc.append(t)
        assert same_products(tmp / "fan_serial0", tmp / f"fan_dask{k}"), "fan-out products differ from the serial ones"
        shutil.rmtree(tmp / f"fan_dask{k}")
        if k: shutil.rmtree(tmp / f"fan_serial{k}")
    r["fanout"] = dict(nints=a.fan_nints, n_ref=4, serial_s=fs, cluster_s=fc, serial_best_s=min(fs), cluster_best_s=min(fc),
                       speedup=min(fs) / min(fc), identical=True)
    r["load_avg_after"] = os.getloadavg()

    b, f = r["batch"], r["fanout"]
    print(f"batch of {a.n} associations ({a.shape}x{a.shape}, 2 sci + 2 ref x {a.nints} ints), best of {a.repeat}:")
    print(f"  serial (this process)        {b['serial_best_s']:6.2f} s   ({b['per_association_serial_s']:.2f} s per association)")
    print(f"  LocalCluster {a.workers} workers        {b['cluster_best_s']:6.2f} s   speedup {b['speedup']:.2f}x"
          f"  (+{min(startup):.1f} s cluster start: {b['speedup_with_startup']:.2f}x)")
    print(f"one association, {a.fan_nints} integrations per exposure, 4 references, fan-out of its blocks:")
    print(f"  serial                       {f['serial_best_s']:6.2f} s")
    print(f"  dask_mapper, {a.workers} workers       {f['cluster_best_s']:6.2f} s   speedup {f['speedup']:.2f}x")
    print(f"products bit-identical in every run; load average before/after {r['load_avg_before'][0]:.1f}/{r['load_avg_after'][0]:.1f}"
          f" on {r['cpu_count']} cores")
    out = Path(a.out); out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(r, indent=1))
    print(f"wrote {out}")
    return r


if __name__ == "__main__":
    main()
