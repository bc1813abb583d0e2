"""Property-based fuzzing of the association reader and the FITS readers.

Whatever the bytes of an ASN or a `_calints` file, reading it ends in one of two ways: a valid object (an
`Association`; an `Exposure` whose arrays have the shapes and types of the contract) or a `CoronlitError` with a
one-line message naming the file. Never another exception. The number of examples is bounded (and derandomized, so
CI is reproducible); raise it with CORONLIT_FUZZ_EXAMPLES=2000 for a longer hunt.
"""
import json, os, tempfile, warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from hypothesis import HealthCheck, given, settings, strategies as st

from coronlit.asn import Association, read_asn
from coronlit.core import CoronlitError
from coronlit.products import Exposure, read_calints, read_product, read_psfmask

N = int(os.environ.get("CORONLIT_FUZZ_EXAMPLES", 150))
SETTINGS = dict(max_examples=N, deadline=5000, derandomize=True, suppress_health_check=list(HealthCheck))  # 5 s: a hang fails
DIR = Path(tempfile.mkdtemp(prefix="coronlit_fuzz_"))
SCI, REF = DIR / "s_calints.fits", DIR / "r_calints.fits"


# ------------------------------------------------------------------------------------------ the association

GOOD_ASN = {"asn_type": "coron3", "asn_id": "c1000", "asn_pool": "pool.csv",
            "products": [{"name": "jw1-c1000_t001_nircam",
                          "members": [{"expname": SCI.name, "exptype": "science"}, {"expname": REF.name, "exptype": "psf"}]}]}
SCI.write_bytes(b"x"); REF.write_bytes(b"x")  # member files that exist (their content is the FITS tests' business)

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                      st.text(max_size=20), st.sampled_from(["science", "psf", "PSF", "", " ", "..", "/", SCI.name, "a\x00b"]))
json_any = st.recursive(json_leaf, lambda c: st.one_of(st.lists(c, max_size=4), st.dictionaries(st.text(max_size=10), c, max_size=4)),
                        max_leaves=12)


def _outcome_asn(path):
    "read_asn must give an Association or a CoronlitError naming the file; returns which."
    for check in (False, True):
        try: a = read_asn(path, check_files=check)
        except CoronlitError as e:
            assert str(path) in str(e) and "\n" not in str(e), str(e)
            return "error"
        assert isinstance(a, Association) and a.science and a.psf
        assert all(isinstance(m.path, Path) and m.exptype in ("science", "psf") for m in a.members)
        assert "/" not in a.product_name
    return "ok"


@st.composite
def mutated_asn(draw):
    "The good ASN with one to three of its values replaced, keys deleted or lists changed."
    asn = json.loads(json.dumps(GOOD_ASN))
    for _ in range(draw(st.integers(1, 3))):
        # walk to a random container inside the ASN
        node = asn
        for _ in range(draw(st.integers(0, 4))):
            kids = list(node.values()) if isinstance(node, dict) else node if isinstance(node, list) else []
            kids = [k for k in kids if isinstance(k, (dict, list))]
            if not kids: break
            node = draw(st.sampled_from(kids))
        if isinstance(node, dict) and node:
            key = draw(st.sampled_from(sorted(node)))
            if draw(st.booleans()): del node[key]
            else: node[key] = draw(json_any)
        elif isinstance(node, list):
            op = draw(st.sampled_from(["append", "clear", "replace"]))
            if op == "append": node.append(draw(json_any))
            elif op == "clear": node.clear()
            elif node: node[draw(st.integers(0, len(node) - 1))] = draw(json_any)
    return asn


@settings(**SETTINGS)
@given(mutated_asn())
def test_asn_mutated_structure(asn):
    p = DIR / "m_asn.json"
    p.write_text(json.dumps(asn))
    _outcome_asn(p)


@settings(**SETTINGS)
@given(json_any)
def test_asn_any_json(value):
    p = DIR / "j_asn.json"
    p.write_text(json.dumps(value))
    assert _outcome_asn(p) == "error"  # no random value is a coron3 ASN


@settings(**SETTINGS)
@given(st.data())
def test_asn_mutated_bytes(data):
    b = bytearray(json.dumps(GOOD_ASN, indent=1).encode())
    for _ in range(data.draw(st.integers(1, 6))):
        op = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        i = data.draw(st.integers(0, max(len(b) - 1, 0)))
        if op == "flip" and b: b[i] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "insert": b[i:i] = data.draw(st.binary(min_size=1, max_size=4))
        elif op == "delete": del b[i:i + data.draw(st.integers(1, 8))]
        else: del b[i:]
    p = DIR / "b_asn.json"
    p.write_bytes(bytes(b))
    _outcome_asn(p)


def test_asn_good_is_ok():
    p = DIR / "g_asn.json"; p.write_text(json.dumps(GOOD_ASN))
    assert _outcome_asn(p) == "ok"


# ------------------------------------------------------------------------------------------ FITS files

def _good_calints(path, nints=2, shape=(8, 10)):
    "A small valid _calints file with the extensions real ones have."
    rng = np.random.default_rng(0)
    sci = rng.normal(5, 1, (nints, *shape)).astype(np.float32)
    prim = fits.PrimaryHDU()
    prim.header.update(TELESCOP="JWST", INSTRUME="NIRCAM", EXP_TYPE="NRC_CORON", FILTER="F335M", CORONMSK="MASKA335R",
                       NINTS=nints, DATAMODL="CubeModel", PA_V3=42.0)
    h = fits.Header(); h.update(CTYPE1="RA---TAN", CTYPE2="DEC--TAN", CRPIX1=5.0, CRPIX2=4.0, CRVAL1=311.29, CRVAL2=-31.34,
                                CDELT1=-1.75e-5, CDELT2=1.75e-5, CUNIT1="deg", CUNIT2="deg", ROLL_REF=42.0, BUNIT="MJy/sr")
    t = np.zeros(nints, dtype=[("integration_number", ">i4"), ("int_mid_MJD_UTC", ">f8")])
    hdus = [prim, fits.ImageHDU(sci, h, name="SCI"), fits.ImageHDU(np.ones_like(sci) * 0.1, name="ERR"),
            fits.ImageHDU(np.zeros(sci.shape, np.uint32), name="DQ"), fits.ImageHDU(np.ones_like(sci), name="VAR_POISSON"),
            fits.ImageHDU(np.ones(shape, np.float32), name="AREA"), fits.BinTableHDU(t, name="INT_TIMES")]
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return path.read_bytes()


GOOD_FITS = _good_calints(DIR / "good_calints.fits")
CARDS = [i for i in range(0, len(GOOD_FITS), 80) if GOOD_FITS[i:i + 8].strip() and GOOD_FITS[i + 8:i + 10] == b"= "]


def _outcome_fits(path, reader=read_calints):
    "A reader must give a valid object or a CoronlitError naming the file; returns which."
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            x = reader(path)
    except CoronlitError as e:
        assert str(path) in str(e) and "\n" not in str(e), str(e)
        return "error"
    if isinstance(x, Exposure):
        assert x.sci.ndim == 3 and x.sci.shape == x.err.shape == x.dq.shape
        assert (x.sci.dtype, x.err.dtype, x.dq.dtype) == (np.float32, np.float32, np.uint32)
        assert all(v.shape == x.sci.shape for v in x.var.values())
        assert x.area is None or x.area.shape == x.shape
    return "ok"


def test_fits_good_is_ok():
    p = DIR / "g_calints.fits"; p.write_bytes(GOOD_FITS)
    assert _outcome_fits(p) == "ok"


@settings(**SETTINGS)
@given(st.integers(0, len(GOOD_FITS) - 1))
def test_fits_truncated(n):
    "Cut anywhere: an error, or (cut at an extension boundary after DQ) a valid exposure without the later extensions."
    p = DIR / "t_calints.fits"; p.write_bytes(GOOD_FITS[:n])
    _outcome_fits(p)


@settings(**SETTINGS)
@given(st.lists(st.tuples(st.integers(0, len(GOOD_FITS) - 1), st.integers(0, 7)), min_size=1, max_size=8))
def test_fits_flipped_bytes(flips):
    b = bytearray(GOOD_FITS)
    for i, bit in flips: b[i] ^= 1 << bit
    p = DIR / "f_calints.fits"; p.write_bytes(bytes(b))
    _outcome_fits(p)
    _outcome_fits(p, read_product)


card_value = st.one_of(st.integers(-5, 10**9).map(str), st.sampled_from(["T", "F", "'NRC_IMAGE'", "''", "'", "1.5", "-1", "0",
                                                                         "NaN", "'MIRI    '", "8", "16", "-32", "-64", "64", "3"]),
                       st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20))


@settings(**SETTINGS)
@given(st.lists(st.tuples(st.sampled_from(CARDS), card_value), min_size=1, max_size=4))
def test_fits_mutated_header_values(edits):
    "A card's value replaced by anything (BITPIX, NAXISn, NINTS, EXP_TYPE, ... included), the card kept 80 characters."
    b = bytearray(GOOD_FITS)
    for i, v in edits: b[i + 10:i + 80] = f"{v:>20}".encode("ascii")[:70].ljust(70)
    p = DIR / "h_calints.fits"; p.write_bytes(bytes(b))
    _outcome_fits(p)
    _outcome_fits(p, read_product)


@settings(**SETTINGS)
@given(st.lists(st.integers(0, 1).flatmap(lambda _: st.sampled_from(CARDS)), min_size=1, max_size=3))
def test_fits_deleted_cards(cards):
    "Cards blanked out (BITPIX, NAXIS, EXTNAME, END's neighbours ...)."
    b = bytearray(GOOD_FITS)
    for i in cards: b[i:i + 80] = b" " * 80
    p = DIR / "d_calints.fits"; p.write_bytes(bytes(b))
    _outcome_fits(p)


@settings(**SETTINGS)
@given(st.lists(st.tuples(st.integers(0, len(GOOD_FITS) - 1), st.integers(0, 7)), min_size=1, max_size=4))
def test_psfmask_flipped_bytes(flips):
    b = bytearray(GOOD_FITS)
    for i, bit in flips: b[i] ^= 1 << bit
    p = DIR / "f_psfmask.fits"; p.write_bytes(bytes(b))
    _outcome_fits(p, lambda q: read_psfmask(q, (8, 10)))
