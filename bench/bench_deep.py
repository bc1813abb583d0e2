"""Time of the zone-wise least squares (coronlit.deep) against today's KLIP, in one process, on one simulated set.

Runs coron3 once (in memory), then subtracts every science exposure from its aligned references with
`coronlit.klip.klip` (today's step, truncate=50) and with `coronlit.deep.deep` (the options of the measurements page),
each repeated and the median taken. Prints wall and CPU seconds and the ratios, and what coron3 would take with the
subtraction swapped (coron3 total - its klip step + deep). Usage::

    python bench/bench_deep.py                        # 2 x 10 science + 2 x 10 reference integrations, 160x160
    python bench/bench_deep.py --nints 20 --shape 320 --repeat 3 --json bench/results/deep.json
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def timed(fn, repeat: int) -> tuple:
    "(median wall, median CPU) seconds of `fn()` over `repeat` runs."
    w, c = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        w.append(time.perf_counter() - t0); c.append(time.process_time() - c0)
    return float(np.median(w)), float(np.median(c))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nints", type=int, default=10)
    ap.add_argument("--shape", type=int, default=160)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    import coronlit
    from coronlit.synth import make_dataset
    from coronlit.klip import klip
    from coronlit.deep import deep
    with tempfile.TemporaryDirectory() as d:
        asn = make_dataset(Path(d) / "data", shape=(a.shape, a.shape), nints=a.nints, n_sci=2, n_ref=2, seed=3,
                           companion=None, wfe_drift=4.0)
        t0, c0 = time.perf_counter(), time.process_time()
        res = coronlit.coron3(asn, None, progress=False)
        total, total_cpu = time.perf_counter() - t0, time.process_time() - c0
        sci = [res.crfints[n] for n in res.psfalign]
        al = [res.psfalign[n] for n in res.psfalign]
        al = [x.replace(sci=np.asarray(x.sci), err=np.asarray(x.err), dq=np.asarray(x.dq)) for x in al]   # in memory
        k_w, k_c = timed(lambda: [klip(e, x, 50) for e, x in zip(sci, al)], a.repeat)
        d_w, d_c = timed(lambda: [deep(e, x, weighted=True) for e, x in zip(sci, al)], a.repeat)
    step = res.timings.get("klip", float("nan"))
    out = dict(case=dict(nints=a.nints, shape=a.shape, n_sci=2, n_ref=2, repeat=a.repeat),
               coron3_total=total, coron3_total_cpu=total_cpu, coron3_klip_step=step,
               klip=dict(wall=k_w, cpu=k_c), deep=dict(wall=d_w, cpu=d_c),
               deep_over_klip_wall=d_w / k_w, deep_over_klip_cpu=d_c / k_c,
               coron3_with_deep=total - step + d_w, coron3_with_deep_ratio=(total - step + d_w) / total,
               coron3_klip_step_cpu=res.cpu.get("klip", float("nan")),
               coron3_cpu_with_deep_ratio=(total_cpu - res.cpu.get("klip", 0.0) + d_c) / total_cpu)
    print(json.dumps(out, indent=1))
    if a.json: Path(a.json).parent.mkdir(parents=True, exist_ok=True); Path(a.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
