"""Collect bench results into the small JSON the docs page nbs/40_benchmarks.ipynb reads (it never reruns the bench).

    python bench/docs_json.py MAIN.json [--threads ONE.json TWO.json] [--scaling S320.json S160.json ...] -o nbs/bench_results.json

MAIN (with jwst) and THREADS are outputs of bench_coron3.py, SCALING of bench_scaling.py. Product lists are dropped.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path


def trim(s: dict) -> dict:
    "A bench_coron3 summary without the product file lists."
    s = json.loads(json.dumps(s))
    for k in ("coronlit", "jwst"):
        if s.get(k): s[k].pop("products", None)
    return s


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("main")
    p.add_argument("--threads", nargs=2, help="the same case with 1 and with 2 workers")
    p.add_argument("--scaling", nargs="*", default=[], help="bench_scaling.py outputs (one per image size)")
    p.add_argument("-o", "--output", default="nbs/bench_results.json")
    a = p.parse_args(argv)
    out = dict(machine=dict(cpus=os.cpu_count(), python=platform.python_version(), system=platform.platform(),
                            note="2 cores shared with other jobs while measuring: CPU seconds are the steadier figure"),
               main=trim(json.loads(Path(a.main).read_text())))
    if a.threads: out["threads"] = [trim(json.loads(Path(f).read_text())) for f in a.threads]
    if a.scaling: out["scaling"] = [json.loads(Path(f).read_text()) for f in a.scaling]
    Path(a.output).write_text(json.dumps(out, indent=1))
    print(f"wrote {a.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
