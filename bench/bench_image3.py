"""Time coronlit's image3 against jwst 3.0.0's Image3Pipeline (offline) on the same simulated imaging set, one thread.

Each pipeline runs in its own child process (so each has its own peak memory), after its imports; the parent writes
the set once, runs coronlit then jwst `--repeat` times alternately, and prints the medians and the ratios as JSON.

    python bench/bench_image3.py [--n-exp 4] [--size 512] [--repeat 1] [--out DIR] [--json results.json]
"""
from __future__ import annotations
import os
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_v, "1")
import argparse, json, resource, shutil, subprocess, sys, time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def child(which: str, asn: str, out: str, apcorr: str, abvega: str) -> dict:
    "Run one pipeline here (imports first, not timed); return wall/CPU seconds, per-step wall seconds and peak RSS (MB)."
    if which == "coronlit":
        from coronlit.impipeline import image3
        import photutils.detection, photutils.segmentation, photutils.background, photutils.aperture, tweakwcs.imalign  # noqa: F401
        t0, c0 = time.perf_counter(), time.process_time()
        r = image3(asn, out, apcorr=apcorr, abvegaoffset=abvega)
        wall, cpu, steps = time.perf_counter() - t0, time.process_time() - c0, {k: round(v, 3) for k, v in r.seconds.items()}
    else:
        sys.path.insert(0, str(HERE))
        from jwst_image3 import run_jwst_image3
        import jwst.pipeline  # noqa: F401
        res = run_jwst_image3(asn, out, apcorr, abvega)
        wall, cpu, steps = res["total"], res["total_cpu"], res["timings"]
    return dict(wall=round(wall, 3), cpu=round(cpu, 3), steps=steps, peak_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))


def run_child(which, asn, out, apcorr, abvega) -> dict:
    "Run `child` in a fresh Python process; its result."
    shutil.rmtree(out, ignore_errors=True)
    r = subprocess.run([sys.executable, __file__, "--child", which, asn, str(out), apcorr, abvega], capture_output=True, text=True)
    if r.returncode != 0: raise RuntimeError(f"{which} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child", nargs=5, metavar=("WHICH", "ASN", "OUT", "APCORR", "ABVEGA"), help=argparse.SUPPRESS)
    p.add_argument("--n-exp", type=int, default=4); p.add_argument("--size", type=int, default=512)
    p.add_argument("--repeat", type=int, default=1); p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench_image3_out"); p.add_argument("--json")
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(child(*a.child))); return 0
    from coronlit.imsynth import make_image_set, write_reference_files
    out = Path(a.out)
    n_src = max(int(70 * (a.size / 256) ** 2), 70)
    asn = make_image_set(out / "data", n_exp=a.n_exp, shape=(a.size, a.size), seed=a.seed, nstars=n_src, ngal=n_src // 5)
    apf, abf = write_reference_files(out / "ref")
    runs = {"coronlit": [], "jwst": []}
    for _ in range(a.repeat):
        for w in runs: runs[w].append(run_child(w, str(asn), out / w, str(apf), str(abf)))
    med = lambda xs: sorted(xs)[len(xs) // 2]
    res = {w: {k: med([r[k] for r in rs]) for k in ("wall", "cpu", "peak_mb")} | {"steps": rs[len(rs) // 2]["steps"]} for w, rs in runs.items()}
    res["ratio"] = {k: round(res["jwst"][k] / res["coronlit"][k], 2) for k in ("wall", "cpu")}
    res["ratio"]["peak_mb (coronlit/jwst)"] = round(res["coronlit"]["peak_mb"] / res["jwst"]["peak_mb"], 2)
    res["set"] = dict(n_exp=a.n_exp, size=a.size, seed=a.seed, repeat=a.repeat, nstars=n_src)
    text = json.dumps(res, indent=1)
    if a.json: Path(a.json).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
