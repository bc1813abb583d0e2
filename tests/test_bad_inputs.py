"""A catalogue of bad inputs, each run through the command line and through the API.

Every case must end the same way: the CLI exits 2 with exactly one `coronlit: error:` line on stderr that names the
file at fault and says what is wrong (no traceback); `coronlit.coron3` raises a `CoronlitError` subclass with the same
text; and no product is left under a final name (nor a temporary file) in the output folder. The inputs are never
modified. At the end, real-file quirks that must NOT be errors.
"""
import hashlib, json, os, shutil, stat, subprocess, sys, tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

import coronlit
from coronlit.core import AsnError, CoronlitError, DataError, FitsError, InputError, OutputError
from coronlit.dq import DO_NOT_USE
from coronlit.synth import make_dataset
from coronlit.products import read_product

BIN = Path(sys.executable).parent
ENV = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
SUFFIXES = ("crfints", "psfstack", "psfalign", "psfsub", "i2d")
ROOT_USER = os.geteuid() == 0
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


# ------------------------------------------------------------------------------------------ the base dataset

@pytest.fixture(scope="module")
def base(tmp_path_factory):
    "A tiny valid dataset (1 science, 1 reference, 3 integrations of 64 x 64) every case copies and breaks."
    d = tmp_path_factory.mktemp("base")
    make_dataset(d, shape=(64, 64), nints=3, n_sci=1, n_ref=1, seed=3)
    return d


@dataclass
class Setup:
    "One broken input: where the ASN and output are, and what the error must say."
    d: Path                      # the case's copy of the dataset
    asn: Path = None
    out: Path = None
    named: Path = None           # the file the message must name
    says: tuple = ()             # fragments the message must contain
    cls: type = InputError       # the CoronlitError subclass the API must raise
    args: list = field(default_factory=list)  # extra CLI arguments
    kw: dict = field(default_factory=dict)    # the same as API keywords
    nobody: bool = False         # run as an unprivileged user (permissions mean nothing to root)
    xfail: str = ""              # a known gap, waiting on a change outside this helper's files
    complete_ok: bool = False    # products finished before the failure may stay (they must be complete)

    @property
    def asn_json(self): return json.loads(self.asn.read_text())
    def member(self, exptype, i=0):
        return self.d / [m["expname"] for m in self.asn_json["products"][0]["members"] if m["exptype"] == exptype][i]
    def write_asn(self, obj): self.asn.write_text(obj if isinstance(obj, str) else json.dumps(obj, indent=1))
    def members(self): return self.asn_json["products"][0]["members"]
    def set_members(self, members):
        a = self.asn_json; a["products"][0]["members"] = members; self.write_asn(a)
    @property
    def psfmask(self): return next(self.d.glob("*_psfmask.fits"))


def edit_fits(path, fn):
    "Rewrite the FITS file `path` after `fn(hdul)` changed it in memory."
    with fits.open(path) as h:
        h = fits.HDUList([x.copy() for x in h])
    fn(h)
    h.writeto(path, overwrite=True)


CASES = {}

def case(fn):
    CASES[fn.__name__] = fn
    return fn


# ------------------------------------------------------------------------------------------ the association

@case
def asn_not_json(s):
    s.write_asn('{"asn_id": "c1000", "products": [}'); s.named, s.says, s.cls = s.asn, ("not valid JSON",), AsnError

@case
def asn_empty(s):
    s.write_asn(""); s.named, s.says, s.cls = s.asn, ("association file is empty",), AsnError

@case
def asn_not_an_object(s):
    s.write_asn("[1, 2, 3]"); s.named, s.says, s.cls = s.asn, ("expected a JSON object, found a list",), AsnError

@case
def asn_binary(s):
    s.asn.write_bytes(bytes(range(256)) * 4); s.named, s.says, s.cls = s.asn, ("cannot read the association",), AsnError

@case
def asn_missing(s):
    s.asn.unlink(); s.named, s.says, s.cls = s.asn, ("association file not found",), AsnError

@case
def asn_no_products(s):
    a = s.asn_json; del a["products"]; s.write_asn(a)
    s.named, s.says, s.cls = s.asn, ("no 'products' list",), AsnError

@case
def asn_no_members(s):
    a = s.asn_json; del a["products"][0]["members"]; s.write_asn(a)
    s.named, s.says, s.cls = s.asn, ("has no 'members'",), AsnError

@case
def asn_member_without_expname(s):
    m = s.members(); del m[1]["expname"]; s.set_members(m)
    s.named, s.says, s.cls = s.asn, ("member 1 has no 'expname'",), AsnError

@case
def asn_unknown_exptype(s):
    m = s.members(); m[1]["exptype"] = "target_acquisition"; s.set_members(m)
    s.named, s.says, s.cls = s.asn, ("unknown exptype 'target_acquisition'",), AsnError

@case
def asn_no_science(s):
    s.set_members([m for m in s.members() if m["exptype"] == "psf"])
    s.named, s.says, s.cls = s.asn, ("no science member",), AsnError

@case
def asn_no_psf(s):
    s.set_members([m for m in s.members() if m["exptype"] == "science"])
    s.named, s.says, s.cls = s.asn, ("no psf member",), AsnError

@case
def asn_member_listed_twice(s):
    m = s.members(); s.set_members(m + [m[1]])
    s.named, s.says, s.cls = s.asn, ("is listed twice",), AsnError

@case
def asn_product_name_is_a_path(s):
    a = s.asn_json; a["products"][0]["name"] = "../../escaped"; s.write_asn(a)
    s.named, s.says, s.cls = s.asn, ("product name '../../escaped' must be a plain file name",), AsnError

@case
def asn_expname_with_nul(s):
    m = s.members(); m[1]["expname"] = "ref\x00_calints.fits"; s.set_members(m)
    s.named, s.says, s.cls = s.asn, ("member 1: expname", "is not a usable file name"), AsnError


# ------------------------------------------------------------------------------------------ one member file

@case
def member_missing(s):
    p = s.member("psf"); p.unlink(); s.named, s.says, s.cls = s.asn, (p.name, "file not found"), AsnError

@case
def member_is_a_folder(s):
    p = s.member("psf"); p.unlink(); p.mkdir(); s.named, s.says, s.cls = s.asn, (p.name, "file not found"), AsnError

@case
def member_not_fits(s):
    p = s.member("science"); p.write_text("SIMPLE? no: this is a text file\n" * 100)
    s.named, s.says, s.cls = p, ("not a readable FITS file",), FitsError

@case
def member_empty_file(s):
    p = s.member("science"); p.write_bytes(b""); s.named, s.says, s.cls = p, ("not a readable FITS file",), FitsError

@case
def member_truncated(s):
    p = s.member("psf"); b = p.read_bytes(); p.write_bytes(b[: len(b) * 2 // 3])
    s.named, s.says, s.cls = p, ("truncated",), FitsError

@case
def member_truncated_in_header(s):
    p = s.member("science"); b = p.read_bytes(); p.write_bytes(b[:4000])
    s.named, s.says, s.cls = p, ("not a readable FITS file",), FitsError

@case
def member_unreadable(s):
    p = s.member("psf"); p.chmod(0)
    s.named, s.says, s.cls, s.nobody = p, ("cannot read", "ermission denied"), FitsError, True

@case
def member_sci_2d(s):
    p = s.member("science"); edit_fits(p, lambda h: [setattr(h[n], "data", h[n].data[0]) for n in ("SCI", "ERR", "DQ")])
    s.named, s.says, s.cls = p, ("SCI extension is 2-D (64, 64), expected 3-D",), FitsError

@case
def member_sci_4d(s):
    p = s.member("psf"); edit_fits(p, lambda h: [setattr(h[n], "data", h[n].data[None]) for n in ("SCI", "ERR", "DQ")])
    s.named, s.says, s.cls = p, ("SCI extension is 4-D (1, 3, 64, 64), expected 3-D",), FitsError

@case
def member_without_sci(s):
    p = s.member("science"); edit_fits(p, lambda h: h.__delitem__("SCI"))
    s.named, s.says, s.cls = p, ("no SCI image extension",), FitsError

@case
def member_dq_shape(s):
    p = s.member("psf"); edit_fits(p, lambda h: setattr(h["DQ"], "data", h["DQ"].data[:, :32]))
    s.named, s.says, s.cls = p, ("DQ has shape (3, 32, 64), SCI has (3, 64, 64)",), FitsError

@case
def member_dq_float(s):
    p = s.member("psf"); edit_fits(p, lambda h: setattr(h["DQ"], "data", h["DQ"].data.astype(np.float32)))
    s.named, s.says, s.cls = p, ("DQ extension has non-integer type float32",), FitsError

@case
def member_nints_disagrees(s):
    p = s.member("science"); edit_fits(p, lambda h: h[0].header.set("NINTS", 5))
    s.named, s.says, s.cls = p, ("NINTS is 5 in the header, but SCI holds 3 integrations",), FitsError

@case
def member_all_nan(s):
    p = s.member("science"); edit_fits(p, lambda h: h["SCI"].data.fill(np.nan))
    s.named, s.says, s.cls = p, ("every pixel of SCI is NaN",), DataError


# ------------------------------------------------------------------------------------------ members together

def _add_ref(s, fn, name="jw09999002001_03107_00002_nrcalong_calints.fits"):
    "A second reference exposure, a copy of the first changed by fn(hdul)."
    p = s.d / name; shutil.copy(s.member("psf"), p); edit_fits(p, fn)
    s.set_members(s.members() + [{"expname": name, "exptype": "psf"}])
    return p

def _crop(h, n=48):
    for e in ("SCI", "ERR", "DQ", "VAR_POISSON", "VAR_RNOISE", "VAR_FLAT"):
        if e in h: h[e].data = h[e].data[..., :n]
    if "AREA" in h: h["AREA"].data = h["AREA"].data[..., :n]

@case
def refs_of_different_shapes(s):
    p = _add_ref(s, _crop)
    s.named, s.says, s.cls = p, ("image shape (64, 48) differs from", "the reference exposures must share one image shape"), DataError

@case
def science_and_refs_of_different_shapes(s):
    p = s.member("psf"); edit_fits(p, _crop)
    s.named, s.says, s.cls = p, ("image shape (64, 48) differs from", "science and reference exposures must share one image shape"), DataError

@case
def exp_type_not_coronagraphic(s):
    p = s.member("psf"); edit_fits(p, lambda h: h[0].header.set("EXP_TYPE", "NRC_IMAGE"))
    s.named, s.says, s.cls = p, ("EXP_TYPE is NRC_IMAGE, not a coronagraphic exposure",), DataError

@case
def mixed_instruments(s):
    p = s.member("psf"); edit_fits(p, lambda h: h[0].header.set("INSTRUME", "MIRI"))
    s.named, s.says, s.cls = p, ("INSTRUME is MIRI, but", "members must share instrument, filter and mask"), DataError

@case
def mixed_filters(s):
    p = s.member("psf"); edit_fits(p, lambda h: h[0].header.set("FILTER", "F444W"))
    s.named, s.says, s.cls = p, ("FILTER is F444W, but",), DataError

@case
def mixed_masks(s):
    p = s.member("psf"); edit_fits(p, lambda h: h[0].header.set("CORONMSK", "MASKA210R"))
    s.named, s.says, s.cls = p, ("CORONMSK is MASKA210R, but",), DataError

@case
def science_all_flagged(s):
    p = s.member("science"); edit_fits(p, lambda h: h["DQ"].data.__ior__(DO_NOT_USE))
    s.named, s.says, s.cls = p, ("every pixel is NaN or flagged DO_NOT_USE: no usable data",), DataError

@case
def psfmask_wrong_shape(s):
    p = s.psfmask; edit_fits(p, lambda h: setattr(h["SCI"], "data", h["SCI"].data[:32]))
    s.named, s.says, s.cls = p, ("PSFMASK has shape (32, 64), the data have (64, 64)",), FitsError

@case
def psfmask_missing(s):
    p = s.d / "nope_psfmask.fits"; s.args, s.kw = ["--psfmask", str(p)], dict(psfmask=str(p))
    s.named, s.says, s.cls = p, ("PSFMASK file not found",), InputError

@case
def psfmask_not_fits(s):
    p = s.psfmask; p.write_text("no FITS here\n" * 300)
    s.named, s.says, s.cls = p, ("not a readable FITS file",), FitsError


# ------------------------------------------------------------------------------------------ options

# options are checked from their one declaration (coronlit.pipeline.CORON3) before anything is read or written

@case
def option_unknown_bad_bits(s):
    s.args, s.kw = ["--bad-bits", "FOO"], dict(bad_bits="FOO")
    s.says, s.cls = ("option bad_bits='FOO': unknown DQ flag name 'FOO'",), InputError

@case
def option_negative_snr(s):
    s.args, s.kw = ["--snr", "-1"], dict(snr=-1.0)
    s.says, s.cls = ("option snr=-1.0: must be in (0, inf]",), InputError


# ------------------------------------------------------------------------------------------ the output folder

@case
def output_is_a_file(s):
    s.out = s.d / "products.fits"; s.out.write_text("x")
    s.named, s.says, s.cls = s.out, ("output folder is a file",), CoronlitError

@case
def output_not_writable(s):
    s.out = s.d / "ro"; s.out.mkdir(); s.out.chmod(0o555)
    s.named, s.says, s.cls, s.nobody = s.out, ("not writable",), OutputError, True

@case
def output_cannot_be_created(s):
    ro = s.d / "ro"; ro.mkdir(); ro.chmod(0o555); s.out = ro / "products"
    s.named, s.says, s.cls, s.nobody = s.out, ("cannot create",), OutputError, True
    s.xfail = "coron3() calls out.mkdir() bare: the lead must call products.prepare_output_dir(out) instead"

@case
def output_disk_full(s):
    s.out = "TMPFS"  # a 900 kB tmpfs, mounted by the runner: two products fit, the third does not
    s.says, s.cls, s.complete_ok = ("cannot write: No space left on device (the disk is full",), OutputError, True


# ------------------------------------------------------------------------------------------ running a case

def _sha(folder):
    "sha256 of every input file (the files directly in the case's folder)."
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(folder).iterdir())
            if p.is_file() and os.access(p, os.R_OK)}


def _prepare(name, how, base, root):
    "A fresh copy of the dataset in root/name-how, broken as case `name` says."
    d = root / f"{name}-{how}"
    shutil.copytree(base, d)
    s = Setup(d, asn=next(d.glob("*_asn.json")), out=d / "out")
    CASES[name](s)
    return s


API = """
import json, sys, coronlit
kw = json.loads(sys.argv[3])
try: coronlit.coron3(sys.argv[1], sys.argv[2], progress=False, **kw); print(json.dumps(["ok", ""]))
except Exception as e: print(json.dumps([[c.__name__ for c in type(e).__mro__], str(e)]))
"""


def _run(s, how, out):
    "Run case `s` through the CLI or the API: (returncode, stderr) or (exception class names, message)."
    user = NOBODY if (s.nobody and ROOT_USER) else []
    env = {**ENV, "HOME": str(s.d.parent / "home")} if user else ENV  # astropy and matplotlib want a writable home
    if how == "cli":
        r = subprocess.run(user + [str(BIN / "coronlit"), "coron3", str(s.asn), "-o", str(out), *s.args],
                           capture_output=True, text=True, env=env, timeout=120)
        return r.returncode, r.stderr
    if user:  # the API as an unprivileged user needs its own process
        r = subprocess.run(user + [sys.executable, "-c", API, str(s.asn), str(out), json.dumps(s.kw)],
                           capture_output=True, text=True, env=env, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        return tuple(json.loads(r.stdout.splitlines()[-1]))
    try:
        coronlit.coron3(s.asn, out, progress=False, **s.kw)
        return "ok", ""
    except Exception as e:
        return [c.__name__ for c in type(e).__mro__], str(e)


def _complete_product(p):
    "True if `p` is a whole product under its final name (it reads back, every array of the right shape)."
    if not any(p.name.endswith(f"_{x}.fits") for x in SUFFIXES): return False
    try: prod = read_product(p)
    except CoronlitError: return False
    return prod.err.shape == prod.sci.shape and np.isfinite(prod.sci).any()


def _listing(folder):
    "Every file in `folder`: products under a final name, and leftover temporary files."
    folder = Path(folder)
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def _run_all(base, how):
    """Every case through the CLI (parallel subprocesses) or the API: outcome, files left, inputs unchanged."""
    root = Path(tempfile.mkdtemp(prefix="coronlit_bad_"))
    root.chmod(0o755)
    mount = root / "tmpfs"; mount.mkdir()
    (root / "home").mkdir(); (root / "home").chmod(0o777)
    mounted = ROOT_USER and subprocess.run(["mount", "-t", "tmpfs", "-o", "size=900k", "tmpfs", str(mount)],
                                           capture_output=True).returncode == 0
    res = {}
    try:
        setups = {(n, how): _prepare(n, how, base, root) for n in CASES}
        if ROOT_USER:  # let the unprivileged user into the cases that need one
            for s in setups.values():
                if s.nobody:
                    for p in [s.d, *s.d.rglob("*")]:
                        if p.is_dir() and p.name != "ro" and p.parent.name != "ro": p.chmod(0o777)
        before = {k: _sha(s.d) for k, s in setups.items()}
        def one(k):
            s = setups[k]
            out = mount if s.out == "TMPFS" else s.out
            if s.out == "TMPFS":
                if not mounted: return None
                for p in mount.iterdir(): p.unlink()
            outcome = _run(s, k[1], out)
            left = _listing(out)
            if s.complete_ok: left = [n for n in left if not _complete_product(out / n)]
            return dict(outcome=outcome, left=left, same=before[k] == _sha(s.d), s=s, n=len(_listing(out)))
        shared = [k for k in setups if setups[k].out == "TMPFS"]
        with ThreadPoolExecutor(4 if how == "cli" else 1) as pool:  # subprocesses in parallel; the API in this process
            futs = {k: pool.submit(one, k) for k in setups if k not in shared}
            res.update({k: f.result() for k, f in futs.items()})
        for k in shared: res[k] = one(k)  # one at a time: they share the mount
        yield res
    finally:
        if mounted: subprocess.run(["umount", str(mount)])
        for p in root.rglob("*"):
            try: p.chmod(0o755 if p.is_dir() else 0o644)
            except OSError: pass
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def api_results(base): yield from _run_all(base, "api")


@pytest.fixture(scope="module")
def cli_results(base): yield from _run_all(base, "cli")


def _check_message(msg, s):
    if s.named is not None: assert str(s.named) in msg, f"{s.named} not named in: {msg}"
    for frag in s.says: assert frag in msg, f"{frag!r} not in: {msg}"


@pytest.mark.slow  # ~45 subprocesses: 40-110 s on a shared 2-core machine
@pytest.mark.parametrize("name", list(CASES))
def test_cli(cli_results, name):
    "The command line: exit 2, one `coronlit: error:` line naming the file and the problem, nothing written."
    r = cli_results[(name, "cli")]
    if r is None: pytest.skip("cannot mount a tmpfs here")
    (rc, err), s = r["outcome"], r["s"]
    try: _check_cli(r, rc, err, s)
    except AssertionError:
        if s.xfail: pytest.xfail(s.xfail)
        raise
    if s.xfail: print(f"{name} passes: {s.xfail!r} is done")


def _check_cli(r, rc, err, s):
    lines = [l for l in err.splitlines() if l.startswith("coronlit: error:")]
    assert rc == 2 and len(lines) == 1, f"exit {rc}, stderr:\n{err[-3000:]}"
    assert "Traceback" not in err and "internal error" not in err, err[-3000:]
    _check_message(lines[0], s)
    assert not r["left"], f"files left in the output folder: {r['left']}"
    if s.complete_ok: assert r["n"] >= 1, "the disk filled before any product: the case tests nothing more than a full disk"
    assert r["same"], "an input file changed"


@pytest.mark.parametrize("name", list(CASES))
def test_api(api_results, name):
    "The API: a CoronlitError subclass naming the file and the problem, nothing written."
    r = api_results[(name, "api")]
    if r is None: pytest.skip("cannot mount a tmpfs here")
    (classes, msg), s = r["outcome"], r["s"]
    try: _check_api(r, classes, msg, s)
    except AssertionError:
        if s.xfail: pytest.xfail(s.xfail)
        raise


def _check_api(r, classes, msg, s):
    assert classes != "ok", "no error raised"
    assert s.cls.__name__ in classes, f"{classes} is not a {s.cls.__name__}: {msg}"
    _check_message(msg, s)
    assert "\n" not in msg, msg
    assert not r["left"], f"files left in the output folder: {r['left']}"
    assert r["same"], "an input file changed"


def test_catalogue_size():
    assert len(CASES) >= 25, len(CASES)


# ------------------------------------------------------------------------------------------ what is NOT an error

def _quirky(base, d):
    "The dataset with a real file's quirks: empty and odd-shaped VAR_*, extra extensions, int32 DQ, f64 ERR, NINTS=1."
    shutil.copytree(base, d)
    s = Setup(d, asn=next(d.glob("*_asn.json")), out=d / "out")
    def sci(h):
        h["VAR_POISSON"].data = None                                # empty, as in SpaceKLIP-processed files
        h["VAR_RNOISE"].data = h["VAR_RNOISE"].data[:, :, :32]     # a different shape
        h["DQ"].data = h["DQ"].data.astype(np.int32); h["ERR"].data = h["ERR"].data.astype(np.float64)
        h.append(fits.ImageHDU(np.zeros((2, 1)), name="IMSHIFTS"))
        h.append(fits.BinTableHDU.from_columns([fits.Column("ASDF_METADATA", "B", array=np.zeros(4, np.uint8))], name="ASDF"))
    def one_int(h):                                                 # NINTS = 1: outlier detection cannot work
        for e in ("SCI", "ERR", "DQ", "VAR_POISSON", "VAR_RNOISE", "VAR_FLAT"):
            if e in h and h[e].data is not None: h[e].data = h[e].data[:1]
        h[0].header["NINTS"] = 1
    edit_fits(s.member("science"), sci); edit_fits(s.member("psf"), one_int)
    return s


def test_quirks_are_not_errors(base, tmp_path, caplog):
    "Empty or differently shaped VAR_*, extra extensions, int32 DQ, float64 ERR and NINTS=1: a warning at most."
    s = _quirky(base, tmp_path / "q")
    before = _sha(s.d)
    with pytest.warns(UserWarning, match="integration"):
        res = coronlit.coron3(s.asn, s.out, progress=False)
    assert {k: len(v) for k, v in res.paths.items()} == {"crfints": 2, "psfstack": 1, "psfalign": 1, "psfsub": 1, "i2d": 1}
    assert res.psfstack.sci.shape == (1, 64, 64) and np.isfinite(res.i2d.sci).any()
    assert any(r.levelname == "WARNING" and "outlier_detection" in r.name for r in caplog.records)
    sci = res.crfints[s.member("science").name]
    assert sorted(sci.var) == ["VAR_FLAT"] and sci.dq.dtype == np.uint32 and sci.err.dtype == np.float32
    assert _sha(s.d) == before
    r = subprocess.run([str(BIN / "coronlit"), "-q", "coron3", str(s.asn), "-o", str(tmp_path / "cli")],
                       capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0 and "error" not in r.stderr, r.stderr[-2000:]
    assert len([p for p in (tmp_path / "cli").iterdir()]) == 6


def test_validate_members_names_the_group(base, tmp_path):
    "validate_members (which the pipeline will call) says which group of members disagrees in shape."
    from coronlit.validate import validate_members
    from coronlit.products import read_calints
    for name, frag in (("refs_of_different_shapes", "the reference exposures must share one image shape"),
                       ("science_and_refs_of_different_shapes", "science and reference exposures must share one image shape")):
        s = _prepare(name, "direct", base, tmp_path)
        a = coronlit.asn.read_asn(s.asn)
        with pytest.raises(DataError) as e:
            validate_members([read_calints(m.path) for m in a.science], [read_calints(m.path) for m in a.psf])
        assert str(s.named) in str(e.value) and frag in str(e.value), str(e.value)


def test_memory_guard(base, monkeypatch):
    "A psfalign that would not fit stops with a message that says how much it needs and how much there is."
    from coronlit.validate import check_memory, psfalign_nbytes
    from coronlit.products import read_calints
    sci = read_calints(next(base.glob("jw09999001*_calints.fits")))
    need = psfalign_nbytes(sci.nints, 3, sci.shape)
    assert need == 3 * 3 * 64 * 64 * 12
    monkeypatch.setenv("CORONLIT_MAX_MEMORY", "100k")
    with pytest.raises(DataError, match=rf"{sci.name}: psfalign would need 432.0 kB, 100.0 kB available \(CORONLIT_MAX_MEMORY\)"):
        check_memory(need, "psfalign", sci.path)
    monkeypatch.setenv("CORONLIT_MAX_MEMORY", "1G")
    assert check_memory(need, "psfalign", sci.path) == need
