"""Time and peak memory of coronlit against the number of science integrations and reference images.

Runs ``bench_coron3.bench`` (coronlit and the I/O floor, each in its own process, BLAS threads pinned to 1; no jwst)
for a list of cases and writes one JSON with a row per case. One science exposure; the references are ``n_ref``
exposures of ``nints`` integrations (coronlit.synth gives every exposure the same number of integrations), so
nrefs = n_ref x nints. Usage::

    python bench/bench_scaling.py                       # the default grid, up to 100 integrations x 200 references
    python bench/bench_scaling.py --cases 10x2 25x2 --shape 160 --json bench/results/scaling_small.json
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_coron3 import bench  # noqa: E402

DEFAULT = ["10x2", "25x2", "50x2", "100x2", "40x1", "40x3", "40x5"]


def row(s: dict) -> dict:
    "One table row from a `bench` summary."
    c, cl, fl = s["case"], s["coronlit"], s["io_floor"]
    return dict(nints_sci=c["nints"], nrefs=c["nrefs"], pairs=c["nints"] * c["nrefs"], shape=c["shape"],
                wall=cl["total"], cpu=cl["total_cpu"], compute_wall=s["coronlit_compute_wall"],
                compute_cpu=s["coronlit_compute_cpu"], align_cpu=cl["cpu"].get("align_refs"),
                klip_cpu=cl["cpu"].get("klip"), write_wall=cl["timings"].get("write"), write_cpu=cl["cpu"].get("write"),
                maxrss_mb=cl["maxrss_mb"], gb_written=cl["bytes_written"] / 1e9, gb_read=fl["bytes_read"] / 1e9,
                floor_wall=fl["total"],
                vs_floor=s["coronlit_vs_floor"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", nargs="+", default=DEFAULT, help="NINTSxNREF_EXPOSURES, e.g. 100x2 (default %(default)s)")
    p.add_argument("--shape", type=int, default=320)
    p.add_argument("--json", default=str(HERE / "results" / "scaling.json"))
    a = p.parse_args(argv)
    rows = []
    dest = Path(a.json); dest.parent.mkdir(parents=True, exist_ok=True)
    for case in a.cases:
        nints, n_ref = (int(x) for x in case.split("x"))
        t = time.perf_counter()
        s = bench(nints=nints, n_sci=1, n_ref=n_ref, shape=a.shape, skip_jwst=True)
        rows.append(row(s))
        r = rows[-1]
        print(f"{r['nints_sci']:4d} x {r['nrefs']:4d}: wall {r['wall']:7.1f} s, CPU {r['cpu']:7.1f} s "
              f"(compute {r['compute_cpu']:6.1f}), peak {r['maxrss_mb']:6.0f} MB, {r['gb_written']:6.2f} GB written, "
              f"floor {r['floor_wall']:6.1f} s  [{time.perf_counter() - t:.0f} s]", flush=True)
        dest.write_text(json.dumps(dict(shape=a.shape, rows=rows), indent=1))
    print(f"wrote {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
