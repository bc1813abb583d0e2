"""Fingerprints of coron3's products: the sha256 of every data array of every product file, so that a test can say the
products are bit-identical to those written by an earlier version (tests/data/golden_*.json, written by
`python tests/_golden.py` at the commit named in the file)."""
import hashlib, json, sys
from pathlib import Path
import numpy as np
from astropy.io import fits

def array_sha(a) -> str:
    "sha256 of an array's values (native byte order, C order) with its dtype and shape."
    a = np.ascontiguousarray(a)
    a = a.astype(a.dtype.newbyteorder("=")) if a.dtype.byteorder not in "=|" else a
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode()); h.update(a.tobytes())
    return h.hexdigest()[:32]

def product_fingerprint(path) -> dict:
    "{EXTNAME,EXTVER: sha} of every array of one product file (tables by column)."
    out = {}
    with fits.open(path) as h:
        for x in h[1:]:
            if x.name == "ASDF" or x.data is None: continue
            if x.data.dtype.names:
                for c in x.data.dtype.names: out[f"{x.name},{x.ver}:{c}"] = array_sha(np.asarray(x.data[c]))
            else: out[f"{x.name},{x.ver}"] = array_sha(np.asarray(x.data))
    return out

def folder_fingerprint(folder) -> dict:
    "{file name: product_fingerprint} of every FITS product in `folder`."
    return {p.name: product_fingerprint(p) for p in sorted(Path(folder).glob("*.fits"))}

def array_samples(a, n:int=48) -> dict:
    "Small stats of an array and its values at `n` fixed finite pixels (for comparisons to a tolerance)."
    a = np.asarray(a, np.float64).ravel(); ok = np.flatnonzero(np.isfinite(a))
    idx = ok[np.random.default_rng(0).choice(ok.size, min(n, ok.size), replace=False)]
    return dict(nnan=int(a.size - ok.size), mean=float(a[ok].mean()), std=float(a[ok].std()), idx=idx.tolist(),
                values=a[idx].tolist())

def memory_fingerprint(res) -> dict:
    "{science name: [sha of sci, err, dq per truncation]} of the in-memory psfsub products of a Coron3Result."
    out = {}
    for name, subs in res.psfsub.items():
        subs = subs if isinstance(subs, list) else [subs]
        out[name] = [[array_sha(s.sci), array_sha(s.err), array_sha(s.dq)] for s in subs]
    return out

SYNTH = dict(shape=(96, 96), nints=3, seed=7)           # the small deterministic simulated set

def synth_runs(tmp):
    "The golden runs on a simulated set: (label, products folder, in-memory fingerprint, i2d of ADI modes) each."
    import coronlit
    from coronlit.synth import make_dataset
    asn = make_dataset(Path(tmp) / "data", **SYNTH)
    out = {}
    for label, kw in {"rdi": {}, "rdi_trunc_list": dict(truncate=[3, 8]), "rdi_noskip_miri": None,
                      "adi": dict(mode="adi", truncate=[5, 10]), "rdi+adi": dict(mode="rdi+adi", truncate=[5, 10])}.items():
        if kw is None: continue
        res = coronlit.coron3(asn, Path(tmp) / label, progress=False, **kw)
        out[label] = dict(files=folder_fingerprint(Path(tmp) / label), memory=memory_fingerprint(res), kw=kw)
        if label in ("adi", "rdi+adi"):     # not bit-identical by promise: values to compare to float32 rounding
            out[label]["samples"] = {**{k: array_samples((s[-1] if isinstance(s, list) else s).sci)
                                        for k, s in res.psfsub.items()}, "i2d": array_samples(res.i2d.sci)}
    return out

if __name__ == "__main__":
    import subprocess, tempfile
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    which = sys.argv[1:] or ["synth", "aumic"]
    here = Path(__file__).parent / "data"
    with tempfile.TemporaryDirectory() as tmp:
        if "synth" in which:
            (here / "golden_synth.json").write_text(json.dumps(dict(commit=commit, synth=SYNTH, runs=synth_runs(tmp)), indent=1))
        if "aumic" in which:
            import coronlit
            import realdata
            asn = realdata.asn(realdata.AUMIC)
            res = coronlit.coron3(asn, Path(tmp) / "aumic", progress=False)
            g = dict(commit=commit, files=folder_fingerprint(Path(tmp) / "aumic"), memory=memory_fingerprint(res))
            for mode in ("adi", "rdi+adi"):
                r = coronlit.coron3(asn, None, progress=False, mode=mode)
                g[mode] = {**{k: array_samples(s.sci) for k, s in r.psfsub.items()}, "i2d": array_samples(r.i2d.sci)}
            (here / "golden_aumic.json").write_text(json.dumps(g, indent=1))
