"""coronlit vs jwst 3.0.0's Coron3Pipeline on one simulated dataset: per-step wall and CPU time, peak memory, I/O floor.

Each contender runs in its own subprocess with BLAS/OpenMP threads pinned (1 by default), so its peak resident
memory (``ru_maxrss``) is its own. The I/O floor is measured the same way: a subprocess that reads every input
file whole with astropy and writes files of exactly the sizes coronlit wrote with plain numpy (``tofile`` + fsync,
as coronlit's atomic writes fsync too). Usage::

    python bench/bench_coron3.py                      # the issue's case: 2 x 40 science + 2 x 40 reference, 320x320
    python bench/bench_coron3.py --nints 10 --shape 160 --skip-jwst --json bench/results/small.json
    python bench/bench_coron3.py --workers 2           # coronlit's blocks in 2 threads

The JSON (default ``bench/results/bench_<case>.json``; ``bench/results`` is git-ignored) holds everything printed.
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_v, "1")  # pin BLAS threads before numpy is imported (children get it through env too)

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _maxrss_mb() -> float:
    "Peak resident memory of this process, MB (Linux reports ru_maxrss in kB)."
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_coronlit(asn: str, out: str, workers: int, truncate: int, block_mb: float) -> dict:
    "Run coronlit.coron3 and return its wall/CPU per step and peak memory."
    import coronlit
    t0, c0 = time.perf_counter(), time.process_time()
    res = coronlit.coron3(asn, out, progress=False, workers=workers, truncate=truncate, block_mb=block_mb)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    nbytes = sum(Path(p).stat().st_size for v in res.paths.values() for p in v)
    return dict(total=wall, total_cpu=cpu, timings=res.timings, cpu=res.cpu, maxrss_mb=_maxrss_mb(),
                products={k: [str(p) for p in v] for k, v in res.paths.items()}, bytes_written=nbytes)


def child_jwst(asn: str, out: str, psfmask: str) -> dict:
    "Run jwst's Coron3Pipeline offline (bench/jwst_coron3.py) and return its timings and peak memory."
    sys.path.insert(0, str(HERE))
    from jwst_coron3 import run_jwst_coron3
    r = run_jwst_coron3(asn, out, psfmask)
    nbytes = sum(Path(p).stat().st_size for v in r["products"].values() for p in v)
    return dict(total=r["total"], total_cpu=r["total_cpu"], timings=r["timings"], cpu=r["cpu"], maxrss_mb=_maxrss_mb(),
                products=r["products"], bytes_written=nbytes)


def child_iofloor(inputs: list, sizes: list, out: str) -> dict:
    "Read every input whole with astropy, then write files of the given sizes with numpy (+ fsync): the I/O floor."
    import numpy as np
    from astropy.io import fits
    t0, c0 = time.perf_counter(), time.process_time()
    nread = 0
    for p in inputs:
        with fits.open(p, memmap=False) as h:
            for x in h:
                if x.data is not None: nread += np.asarray(x.data).nbytes
    t1, c1 = time.perf_counter(), time.process_time()
    Path(out).mkdir(parents=True, exist_ok=True)
    chunk = np.random.default_rng(0).random(2**22).astype(np.float32)  # 16 MB of incompressible bytes
    for i, n in enumerate(sizes):
        with open(Path(out) / f"floor_{i}.bin", "wb") as f:
            left = n
            while left > 0:
                k = min(left, chunk.nbytes)
                f.write(chunk.data[:k]); left -= k
            f.flush(); os.fsync(f.fileno())
    t2, c2 = time.perf_counter(), time.process_time()
    return dict(read=t1 - t0, read_cpu=c1 - c0, write=t2 - t1, write_cpu=c2 - c1, total=t2 - t0, total_cpu=c2 - c0,
                bytes_read=nread, bytes_written=int(sum(sizes)), maxrss_mb=_maxrss_mb())


# Linux keeps a process's peak RSS across fork and exec: a child forked from this (big) process would report this
# process's peak as its own. A small trampoline process in between gives the measured child a clean count.
TRAMPOLINE = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"


def run_child(kind: str, payload: dict, threads: int = 1) -> dict:
    "Run one measurement in a fresh Python (via a small trampoline) with pinned threads; its JSON result."
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads), "NUMEXPR_NUM_THREADS": str(threads), "MPLBACKEND": "Agg"}
    r = subprocess.run([sys.executable, "-c", TRAMPOLINE, sys.executable, __file__, "--child", kind,
                        "--payload", json.dumps(payload)], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"{kind} run failed:\n{r.stderr[-4000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


COMPUTE_STEPS = ("outlier_detection", "stack_refs", "align_refs", "klip", "resample")
JWST_STEPS = {"outlier_detection": "outlier_detection", "stack_refs": "stack_refs", "align_refs": "align_refs",
              "klip": "klip", "resample": "resample"}


def summarise(case: dict, cl: dict, jw: dict | None, floor: dict) -> dict:
    "Ratios and per-step table from the three measurements."
    rows = []
    for s in COMPUTE_STEPS + ("read", "write", "write_wait"):
        row = dict(step=s, coronlit_wall=cl["timings"].get(s), coronlit_cpu=cl["cpu"].get(s))
        if jw is not None and s in JWST_STEPS:
            row.update(jwst_wall=jw["timings"].get(JWST_STEPS[s]), jwst_cpu=jw["cpu"].get(JWST_STEPS[s]))
        rows.append(row)
    cl_comp = sum(cl["timings"].get(s, 0.0) for s in COMPUTE_STEPS)
    cl_comp_cpu = sum(cl["cpu"].get(s, 0.0) for s in COMPUTE_STEPS)
    out = dict(case=case, steps=[r for r in rows if r["coronlit_wall"] is not None or r.get("jwst_wall") is not None],
               coronlit=cl, jwst=jw, io_floor=floor,
               coronlit_compute_wall=cl_comp, coronlit_compute_cpu=cl_comp_cpu,
               coronlit_vs_floor=cl["total"] / floor["total"])
    if jw is not None:
        jw_comp = sum(jw["timings"].get(s, 0.0) for s in JWST_STEPS.values())
        jw_comp_cpu = sum(jw["cpu"].get(s, 0.0) for s in JWST_STEPS.values())
        out.update(jwst_compute_wall=jw_comp, jwst_compute_cpu=jw_comp_cpu,
                   speedup_total_wall=jw["total"] / cl["total"], speedup_total_cpu=jw["total_cpu"] / cl["total_cpu"],
                   speedup_compute_wall=jw_comp / cl_comp, speedup_compute_cpu=jw_comp_cpu / cl_comp_cpu,
                   memory_ratio=cl["maxrss_mb"] / jw["maxrss_mb"])
    return out


def fmt(x, w=8, p=2):
    return f"{x:{w}.{p}f}" if isinstance(x, (int, float)) else " " * (w - 1) + "-"


def report(s: dict) -> str:
    "A plain-text table of the summary."
    c = s["case"]
    lines = [f"case: {c['n_sci']} science x {c['nints']} + {c['n_ref']} reference x {c['nints']} integrations, "
             f"{c['shape']}x{c['shape']}, threads {c['workers']}",
             f"{'step':<18}{'coronlit wall':>14}{'cpu':>8}{'jwst wall':>12}{'cpu':>8}{'ratio':>8}"]
    for r in s["steps"]:
        ratio = r["jwst_wall"] / r["coronlit_wall"] if r.get("jwst_wall") and r.get("coronlit_wall") else None
        lines.append(f"{r['step']:<18}{fmt(r['coronlit_wall'], 14)}{fmt(r['coronlit_cpu'])}"
                     f"{fmt(r.get('jwst_wall'), 12)}{fmt(r.get('jwst_cpu'))}{fmt(ratio, 8, 1)}")
    cl, jw, fl = s["coronlit"], s["jwst"], s["io_floor"]
    if "write_wait" in cl["timings"]:
        lines.append("(coronlit's write runs in a background thread, overlapping the computation; write_wait is the "
                     "time the computation waited for it)")
    lines.append(f"{'total':<18}{fmt(cl['total'], 14)}{fmt(cl['total_cpu'])}"
                 f"{fmt(jw and jw['total'], 12)}{fmt(jw and jw['total_cpu'])}{fmt(s.get('speedup_total_wall'), 8, 1)}")
    lines.append(f"{'compute only':<18}{fmt(s['coronlit_compute_wall'], 14)}{fmt(s['coronlit_compute_cpu'])}"
                 f"{fmt(s.get('jwst_compute_wall'), 12)}{fmt(s.get('jwst_compute_cpu'))}{fmt(s.get('speedup_compute_wall'), 8, 1)}")
    lines.append(f"peak memory MB: coronlit {cl['maxrss_mb']:.0f}" + (f", jwst {jw['maxrss_mb']:.0f}" if jw else "")
                 + f", I/O floor process {fl['maxrss_mb']:.0f}")
    lines.append(f"written: coronlit {cl['bytes_written'] / 1e9:.2f} GB" + (f", jwst {jw['bytes_written'] / 1e9:.2f} GB" if jw else ""))
    if len(cl.get("all_totals", [])) > 1:
        lines.append("runs (s): coronlit " + ", ".join(f"{t:.1f}" for t in cl["all_totals"])
                     + "; I/O floor " + ", ".join(f"{t:.1f}" for t in fl["all_totals"]) + " (median run shown)")
    lines.append(f"I/O floor: read {fl['read']:.2f} s ({fl['bytes_read'] / 1e9:.2f} GB), write {fl['write']:.2f} s "
                 f"({fl['bytes_written'] / 1e9:.2f} GB), total {fl['total']:.2f} s; coronlit / floor = {s['coronlit_vs_floor']:.2f}")
    if jw:
        lines.append(f"speed-up vs jwst: end to end {s['speedup_total_wall']:.1f}x wall ({s['speedup_total_cpu']:.1f}x CPU); "
                     f"computation {s['speedup_compute_wall']:.1f}x wall ({s['speedup_compute_cpu']:.1f}x CPU); "
                     f"memory {s['memory_ratio']:.2f} of jwst's")
    return "\n".join(lines)


def _settle():
    "Flush dirty pages and give the disk a moment (files just deleted are trimmed), so runs start alike."
    os.sync(); time.sleep(2)


def _median_run(runs: list) -> dict:
    "The run with the median total time (of an odd count; the faster middle one of an even count)."
    return sorted(runs, key=lambda r: r["total"])[(len(runs) - 1) // 2]


def bench(nints=40, n_sci=2, n_ref=2, shape=320, workers=1, truncate=50, seed=0, work=None, skip_jwst=False,
          keep=False, block_mb=128.0, jwst_json=None, repeat=1) -> dict:
    "Make the dataset, run coronlit, jwst and the I/O floor, each in its own process; the summary dict."
    from coronlit.synth import make_dataset, load_truth
    work = Path(work or f"/tmp/coronlit_bench_{n_sci}x{nints}_{n_ref}x{nints}_{shape}")
    if work.exists(): shutil.rmtree(work)
    data = work / "data"
    asn = make_dataset(data, n_sci=n_sci, n_ref=n_ref, nints=nints, shape=(shape, shape), seed=seed)
    truth = load_truth(data)
    case = dict(nints=nints, nrefs=n_ref * nints, n_sci=n_sci, n_ref=n_ref, shape=shape, workers=workers,
                truncate=truncate, seed=seed)
    try:
        inputs = [str(p) for p in data.glob("*_calints.fits")]
        cls, floors = [], []
        for _ in range(repeat):         # alternate: the disk's speed drifts, both see the same drift
            _settle()
            cls.append(run_child("coronlit", dict(asn=str(asn), out=str(work / "coronlit"), workers=workers,
                                                  truncate=truncate, block_mb=block_mb), threads=1))
            sizes = [Path(p).stat().st_size for v in cls[-1]["products"].values() for p in v]
            shutil.rmtree(work / "coronlit")  # free the disk before the next run
            _settle()
            floors.append(run_child("iofloor", dict(inputs=inputs, sizes=sizes, out=str(work / "floor"))))
            shutil.rmtree(work / "floor")
        cl, floor = _median_run(cls), _median_run(floors)
        cl["all_totals"], floor["all_totals"] = [r["total"] for r in cls], [r["total"] for r in floors]
        jw = json.loads(Path(jwst_json).read_text()) if jwst_json else None
        jw = jw.get("jwst", jw) if jw else None          # an earlier summary, or a bare jwst measurement
        if jw is None and not skip_jwst:
            sys.path.insert(0, str(HERE))
            from jwst_coron3 import prepare_jwst_inputs
            jasn, jmask = prepare_jwst_inputs(asn, work / "jwst-input", data / truth["psfmask"])
            jw = run_child("jwst", dict(asn=str(jasn), out=str(work / "jwst"), psfmask=str(jmask)), threads=1)
    finally:
        if not keep: shutil.rmtree(work, ignore_errors=True)
    return summarise(case, cl, jw, floor)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nints", type=int, default=40, help="integrations per science exposure (default 40)")
    p.add_argument("--n-sci", type=int, default=2, help="science exposures (default 2)")
    p.add_argument("--n-ref", type=int, default=2, help="reference exposures (default 2)")
    p.add_argument("--shape", type=int, default=320, help="image side, pixels (default 320)")
    p.add_argument("--workers", type=int, default=1, help="coronlit block threads (default 1)")
    p.add_argument("--truncate", type=int, default=50, help="KL modes (default 50)")
    p.add_argument("--block-mb", type=float, default=128.0, help="coronlit block memory budget, MB")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", help="scratch folder (default /tmp/coronlit_bench_<case>)")
    p.add_argument("--skip-jwst", action="store_true", help="coronlit and the I/O floor only")
    p.add_argument("--keep", action="store_true", help="keep the scratch folder")
    p.add_argument("--jwst-json", help="reuse a jwst measurement of the same case (the 'jwst' entry of an earlier run's JSON, "
                                       "or run_child's output) instead of running jwst again")
    p.add_argument("--repeat", type=int, default=1, help="coronlit and I/O floor runs, alternated; medians reported")
    p.add_argument("--json", help="write the results here (default bench/results/bench_<case>.json)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--payload", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        fn = dict(coronlit=child_coronlit, jwst=child_jwst, iofloor=child_iofloor)[a.child]
        print(json.dumps(fn(**json.loads(a.payload))))
        return 0
    s = bench(a.nints, a.n_sci, a.n_ref, a.shape, a.workers, a.truncate, a.seed, a.work, a.skip_jwst, a.keep,
              a.block_mb, a.jwst_json, a.repeat)
    print(report(s))
    dest = Path(a.json) if a.json else HERE / "results" / (
        f"bench_{a.n_sci}x{a.nints}_{a.n_ref}x{a.nints}_{a.shape}_w{a.workers}.json")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(s, indent=1))
    print(f"wrote {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
