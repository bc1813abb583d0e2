"""Run STScI's jwst 3.0.0 Image3Pipeline offline on an image3 association, as the reference coronlit's image3 is compared
and timed against.

CRDS is pointed at a local cache folder holding only a server config (see ``bench/jwst_coron3.py``), step parameter
files from CRDS are off, and source_catalog's two reference files are given through ``override_apcorr`` and
``override_abvegaoffset``: the plain FITS/ASDF files coronlit reads (``coronlit.imsynth.write_reference_files``) are
rewritten as stdatamodels models (:func:`jwst_reference_files`), the same numbers for both.

    python bench/jwst_image3.py ASN.json OUTDIR --apcorr APCORR.fits --abvegaoffset ABVEGA.asdf [--json t.json]
"""
from __future__ import annotations
import os
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_v, "1")
import argparse, json, logging, sys, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from jwst_coron3 import set_offline_env, StepTimer, DEFAULT_CONTEXT  # noqa: E402

SUFFIXES = {"crf": "fits", "i2d": "fits", "segm": "fits", "cat": "ecsv"}


def write_reference_files(apcorr_table, abvega_table, folder, instrument="NIRCAM") -> tuple[Path, Path]:
    "Write an APCORR (NrcImgApcorrModel) and an ABVEGAOFFSET (ABVegaOffsetModel) file from astropy Tables; return their paths."
    from stdatamodels.jwst import datamodels
    folder = Path(folder); folder.mkdir(parents=True, exist_ok=True)
    ap = datamodels.NrcImgApcorrModel()
    ap.apcorr_table = apcorr_table.as_array()
    ap.meta.instrument.name = instrument; ap.meta.exposure.type = "NRC_IMAGE" if instrument == "NIRCAM" else None
    ap.meta.reftype = "APCORR"; ap.meta.author = "coronlit bench"; ap.meta.pedigree = "DUMMY"
    ap.meta.description = "simulated"; ap.meta.useafter = "2000-01-01T00:00:00"
    ab = datamodels.ABVegaOffsetModel()
    ab.abvega_offset = abvega_table
    ab.meta.instrument.name = instrument; ab.meta.reftype = "ABVEGAOFFSET"; ab.meta.author = "coronlit bench"
    ab.meta.pedigree = "DUMMY"; ab.meta.description = "simulated"; ab.meta.useafter = "2000-01-01T00:00:00"
    pa, pb = folder / "sim_apcorr.fits", folder / "sim_abvegaoffset.asdf"
    ap.save(pa); ab.save(pb)
    return pa, pb


def jwst_reference_files(apcorr, abvegaoffset, folder) -> tuple[Path, Path]:
    "jwst-readable (stdatamodels) copies of a plain APCORR FITS table and ABVEGAOFFSET asdf (as coronlit.imsynth writes them)."
    import asdf
    from astropy.io import fits
    from astropy.table import Table
    with fits.open(apcorr) as h:
        ap = Table(h["APCORR"].data)
        inst = h[0].header.get("INSTRUME", "NIRCAM")
    with asdf.open(abvegaoffset, lazy_load=False) as af:
        ab = Table(af.tree["abvega_offset"])
    return write_reference_files(ap, ab, folder, inst)


def find_products(output_dir) -> dict:
    out = Path(output_dir)
    return {s: sorted(str(p) for p in out.glob(f"*_{s}.{e}")) for s, e in SUFFIXES.items()}


def run_jwst_image3(asn_path, output_dir, apcorr, abvegaoffset, steps: dict | None = None, crds_path=None,
                    context: str = DEFAULT_CONTEXT, quiet: bool = True) -> dict:
    "Run jwst's Image3Pipeline offline; return wall/CPU seconds per step, totals and the products."
    output_dir = Path(output_dir); output_dir.mkdir(parents=True, exist_ok=True)
    crds_path = (Path(crds_path) if crds_path is not None else output_dir / "crds_cache").resolve()
    env = set_offline_env(crds_path, context)
    apcorr, abvegaoffset = jwst_reference_files(apcorr, abvegaoffset, output_dir / "jwst_ref")
    from jwst.pipeline import Image3Pipeline
    pars = {"source_catalog": {"override_apcorr": str(apcorr), "override_abvegaoffset": str(abvegaoffset)}}
    for k, v in (steps or {}).items(): pars.setdefault(k, {}).update(v)
    timer = StepTimer(); lg = logging.getLogger("stpipe.step"); lg.addHandler(timer); lvl = lg.level; lg.setLevel(logging.INFO)
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        Image3Pipeline.call(str(asn_path), output_dir=str(output_dir), save_results=True, steps=pars, configure_log=not quiet)
        total, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        lg.removeHandler(timer); lg.setLevel(lvl)
    return dict(timings={k: round(v, 3) for k, v in timer.seconds.items() if k != "Image3Pipeline"},
                total=round(total, 3), total_cpu=round(cpu, 3), products=find_products(output_dir), env=env)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("asn"); p.add_argument("output_dir")
    p.add_argument("--apcorr", required=True); p.add_argument("--abvegaoffset", required=True)
    p.add_argument("--json"); p.add_argument("--verbose", action="store_true")
    a = p.parse_args(argv)
    res = run_jwst_image3(a.asn, a.output_dir, a.apcorr, a.abvegaoffset, quiet=not a.verbose)
    text = json.dumps(res, indent=2)
    if a.json: Path(a.json).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
