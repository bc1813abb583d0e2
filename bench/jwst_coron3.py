"""Run STScI's jwst 3.0.0 Coron3Pipeline offline, as the reference coronlit is compared and timed against.

No network is used: CRDS is pointed at a small local cache folder whose ``config/jwst/server_config`` names an
operational context, at a closed port on localhost, in local mode, with the context fixed by ``CRDS_CONTEXT``;
step parameter files from CRDS are disabled (``STPIPE_DISABLE_CRDS_STEPPARS=true``) and the one reference file the
coron3 steps ask for (align_refs' PSFMASK) is given through ``override_psfmask``. jwst's resample needs a gwcs in
each input (``meta.wcs``) and a few ``meta.wcsinfo`` keywords; :func:`prepare_jwst_inputs` writes copies of the
members that have them (built from the FITS WCS of the SCI header) into a separate folder, never touching the
originals.

Use from Python (``run_jwst_coron3``) or from the shell::

    python bench/jwst_coron3.py ASN.json OUTDIR --psfmask MASK.fits [--prepare] [--json timings.json]
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_v, "1")  # pin BLAS threads before numpy is imported

import argparse
import json
import logging
import shutil
import socket
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_CONTEXT = "jwst_1413.pmap"  # only its name is used: no rules are loaded when no reference is fetched
SUFFIXES = ("crfints", "psfstack", "psfalign", "psfsub", "i2d")


def server_config_text(context: str = DEFAULT_CONTEXT) -> str:
    "The contents of a minimal CRDS ``server_config`` for working offline with `context`."
    info = dict(observatory="jwst", operational_context=context, latest_context=context, edit_context=context,
                force_remote_mode=False, bad_files_list=[], bad_files="", last_synced="offline (coronlit bench)",
                connected=False)
    return repr(info) + "\n"


def make_crds_cache(crds_path, context: str = DEFAULT_CONTEXT) -> Path:
    "Create (or refresh) a local CRDS cache folder holding only ``config/jwst/server_config``; return its path."
    crds_path = Path(crds_path)
    cfg = crds_path / "config" / "jwst" / "server_config"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(server_config_text(context))
    return crds_path


def closed_local_port() -> int:
    "A TCP port on 127.0.0.1 with nothing listening (bind to an ephemeral port, then release it)."
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def offline_env(crds_path, context: str = DEFAULT_CONTEXT, port: int | None = None) -> dict:
    "The environment variables that make jwst/CRDS run with no network."
    port = closed_local_port() if port is None else port
    return dict(CRDS_PATH=str(crds_path), CRDS_SERVER_URL=f"https://127.0.0.1:{port}", CRDS_MODE="local",
                CRDS_CONTEXT=context, STPIPE_DISABLE_CRDS_STEPPARS="true")


def set_offline_env(crds_path, context: str = DEFAULT_CONTEXT) -> dict:
    "Write the CRDS cache folder and set the offline variables in ``os.environ`` (before jwst is used)."
    env = offline_env(make_crds_cache(crds_path, context), context)
    os.environ.update(env)
    return env


# ---------------------------------------------------------------------------------------------- inputs with gwcs
def gwcs_from_header(header, shape):
    "A gwcs (detector -> ICRS) equal to the linear TAN part of a FITS celestial WCS (SIP terms are dropped)."
    from astropy import coordinates as coord, units as u
    from astropy.modeling import models as m
    from astropy.wcs import WCS
    from gwcs import coordinate_frames as cf, wcs as gw

    w = WCS(header, naxis=2)
    if not all(t.endswith("TAN") or t.endswith("TAN-SIP") for t in w.wcs.ctype):
        raise ValueError(f"only TAN projections are supported, got {list(w.wcs.ctype)}")
    crpix = w.wcs.crpix - 1  # FITS 1-based -> 0-based pixel indices
    cd = w.pixel_scale_matrix  # degrees per pixel, (ra, dec) x (x, y)
    transform = (m.Shift(-crpix[0]) & m.Shift(-crpix[1]) | m.AffineTransformation2D(matrix=cd)
                 | m.Pix2Sky_TAN() | m.RotateNative2Celestial(w.wcs.crval[0], w.wcs.crval[1], 180))
    detector = cf.Frame2D(name="detector", axes_order=(0, 1), unit=(u.pix, u.pix))
    sky = cf.CelestialFrame(reference_frame=coord.ICRS(), name="world", unit=(u.deg, u.deg))
    g = gw.WCS([(detector, transform), (sky, None)])
    ny, nx = shape
    g.bounding_box = ((-0.5, nx - 0.5), (-0.5, ny - 0.5))
    g.pixel_shape = (nx, ny)
    return g


def wcsinfo_from_header(header, gwcs_obj, shape) -> dict:
    "The ``meta.wcsinfo`` values jwst's resample reads (ra/dec_ref, roll_ref, v3yangle, vparity, s_region)."
    from astropy.wcs import WCS
    from stcal.alignment.util import compute_s_region_imaging

    w = WCS(header, naxis=2)
    cd = w.pixel_scale_matrix
    v3yangle = float(header.get("V3I_YANG", 0.0))
    vparity = int(header.get("VPARITY", -1))
    pa_y = float(np.degrees(np.arctan2(cd[0, 1], cd[1, 1])))  # PA of the detector +y axis, east of north
    roll = float(header.get("ROLL_REF", pa_y - v3yangle))
    ny, nx = shape
    ra, dec = gwcs_obj((nx - 1) / 2, (ny - 1) / 2)
    return dict(ra_ref=float(header.get("RA_REF", ra)), dec_ref=float(header.get("DEC_REF", dec)),
                roll_ref=roll, v3yangle=v3yangle, vparity=vparity,
                s_region=compute_s_region_imaging(gwcs_obj, shape=shape))


def to_jwst_input(src, dst) -> Path:
    "Copy one ``_calints`` file to `dst`, adding a gwcs (``meta.wcs``) and wcsinfo if it has none."
    from astropy.io import fits
    from stdatamodels.jwst import datamodels

    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve():
        raise ValueError(f"{dst}: refusing to overwrite the input")
    with datamodels.open(src) as model:
        if model.meta.wcs is not None:
            shutil.copyfile(src, dst)
            return dst
        header = fits.getheader(src, "SCI")
        shape = model.data.shape[-2:]
        g = gwcs_from_header(header, shape)
        model.meta.wcs = g
        for k, v in wcsinfo_from_header(header, g, shape).items():
            setattr(model.meta.wcsinfo, k, v)
        model.save(dst)
    return dst


def prepare_jwst_inputs(asn_path, work_dir, psfmask_path=None) -> tuple[Path, Path | None]:
    "Write jwst-ready copies of an ASN's members (and the PSFMASK) into `work_dir`; return (new asn, new psfmask)."
    asn_path, work_dir = Path(asn_path), Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    asn = json.loads(asn_path.read_text())
    for product in asn["products"]:
        for member in product["members"]:
            name = Path(member["expname"]).name
            to_jwst_input(asn_path.parent / member["expname"], work_dir / name)
            member["expname"] = name
    new_asn = work_dir / asn_path.name
    new_asn.write_text(json.dumps(asn, indent=2))
    new_mask = None
    if psfmask_path is not None:
        new_mask = work_dir / Path(psfmask_path).name
        shutil.copyfile(psfmask_path, new_mask)
    return new_asn, new_mask


# ---------------------------------------------------------------------------------------------- running
class StepTimer(logging.Handler):
    "Collects wall-clock and CPU seconds per stpipe step from its 'Step X running' / 'Step X done' log records."
    def __init__(self):
        super().__init__(logging.INFO)
        self.open, self.seconds, self.cpu, self.calls = {}, {}, {}, {}

    def emit(self, record):
        msg = str(record.msg)
        if not msg.startswith("Step %s") or not record.args:
            return
        name = record.args[0]
        if "running" in msg:
            self.open.setdefault(name, []).append((record.created, time.process_time()))
        elif msg.startswith("Step %s done") and self.open.get(name):
            t0, c0 = self.open[name].pop()
            self.seconds[name] = self.seconds.get(name, 0.0) + record.created - t0
            self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - c0  # emit runs in the step's thread
            self.calls[name] = self.calls.get(name, 0) + 1


def find_products(output_dir) -> dict:
    "The product files in `output_dir`, by suffix: {'psfsub': [paths], ...}."
    out = Path(output_dir)
    return {s: sorted(str(p) for p in out.glob(f"*_{s}.fits")) for s in SUFFIXES}


def run_jwst_coron3(asn_path, output_dir, psfmask_path, steps: dict | None = None, crds_path=None,
                    context: str = DEFAULT_CONTEXT, quiet: bool = True) -> dict:
    "Run jwst's Coron3Pipeline offline on `asn_path`; return wall/CPU seconds per step, calls, products, env."
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    crds_path = (Path(crds_path) if crds_path is not None else output_dir / "crds_cache").resolve()
    env = set_offline_env(crds_path, context)

    from jwst.pipeline import Coron3Pipeline

    step_pars = {"align_refs": {"override_psfmask": str(psfmask_path)}}
    for name, pars in (steps or {}).items():
        step_pars.setdefault(name, {}).update(pars)
    timer = StepTimer()
    step_logger = logging.getLogger("stpipe.step")
    step_logger.addHandler(timer)
    step_logger_level = step_logger.level
    step_logger.setLevel(logging.INFO)  # the timer needs the INFO records
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        # configure_log=False: stpipe adds no console handler, so only warnings reach stderr (quiet=False: jwst's log)
        Coron3Pipeline.call(str(asn_path), output_dir=str(output_dir), save_results=True, steps=step_pars,
                            configure_log=not quiet)
        total, total_cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        step_logger.removeHandler(timer)
        step_logger.setLevel(step_logger_level)
    timings = {k: round(v, 3) for k, v in timer.seconds.items() if k != "Coron3Pipeline"}
    cpu = {k: round(v, 3) for k, v in timer.cpu.items() if k != "Coron3Pipeline"}
    return dict(timings=timings, cpu=cpu, calls=timer.calls, total=round(total, 3), total_cpu=round(total_cpu, 3),
                products=find_products(output_dir), env=env)


def main(argv=None) -> int:
    "Command line: run jwst's coron3 offline, print the timings and products as JSON."
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("asn", help="coron3 association (.json)")
    p.add_argument("output_dir", help="folder for jwst's products")
    p.add_argument("--psfmask", required=True, help="PSFMASK file given to align_refs (override_psfmask)")
    p.add_argument("--prepare", action="store_true",
                   help="first write gwcs-carrying copies of the members into OUTPUT_DIR/jwst-input")
    p.add_argument("--context", default=DEFAULT_CONTEXT, help="CRDS context name (default %(default)s)")
    p.add_argument("--json", help="also write the result to this JSON file")
    p.add_argument("--verbose", action="store_true", help="show jwst's own log (INFO) on stderr")
    a = p.parse_args(argv)
    asn, mask = Path(a.asn), Path(a.psfmask)
    if a.prepare:
        asn, mask = prepare_jwst_inputs(asn, Path(a.output_dir) / "jwst-input", mask)
    res = run_jwst_coron3(asn, a.output_dir, mask, context=a.context, quiet=not a.verbose)
    text = json.dumps(res, indent=2)
    if a.json:
        Path(a.json).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
