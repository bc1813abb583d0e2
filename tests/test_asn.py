"""coronlit.asn: every malformed association gives an AsnError naming the ASN (and the member); product names."""
import json
from pathlib import Path

import pytest

from coronlit.asn import Association, Member, member_root, product_path, read_asn
from coronlit.core import AsnError, InputError

GOOD = [{"expname": "jw1_nrcalong_calints.fits", "exptype": "science"},
        {"expname": "jw2_nrcalong_calints.fits", "exptype": "psf"}]


def asn_dict(members=GOOD, **top):
    d = {"asn_type": "coron3", "asn_id": "a3001", "asn_pool": "jw1_pool",
         "products": [{"name": "jw00001-a3001_t001_nircam_f430m-maskrnd", "members": members}]}
    d.update(top)
    return {k: v for k, v in d.items() if v is not None}


def write_asn(folder, obj, name="my_asn.json", files=True):
    p = folder / name
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    if files and isinstance(obj, dict):
        for prod in obj.get("products") or []:
            for m in (prod.get("members") or []) if isinstance(prod, dict) else []:
                if isinstance(m, dict) and isinstance(m.get("expname"), str) and m["expname"].strip():
                    f = (folder / m["expname"].strip()); f.parent.mkdir(parents=True, exist_ok=True); f.write_bytes(b"x")
    return p


def test_good(tmp_path):
    a = read_asn(write_asn(tmp_path, asn_dict()))
    assert isinstance(a, Association)
    assert (a.asn_id, a.asn_pool, a.product_name, a.name) == ("a3001", "jw1_pool", "jw00001-a3001_t001_nircam_f430m-maskrnd", "my_asn.json")
    assert a.members == [Member(tmp_path / "jw1_nrcalong_calints.fits", "science", "jw1_nrcalong_calints.fits"),
                         Member(tmp_path / "jw2_nrcalong_calints.fits", "psf", "jw2_nrcalong_calints.fits")]
    assert [m.expname for m in a.science] == ["jw1_nrcalong_calints.fits"]
    assert [m.expname for m in a.psf] == ["jw2_nrcalong_calints.fits"]


def test_order_and_case(tmp_path):
    members = [{"expname": "r1_calints.fits", "exptype": "PSF"}, {"expname": "s1_calints.fits", "exptype": " Science "},
               {"expname": "r2_calints.fits", "exptype": "psf"}, {"expname": "s2_calints.fits", "exptype": "SCIENCE"}]
    a = read_asn(write_asn(tmp_path, asn_dict(members)))
    assert [m.exptype for m in a.members] == ["psf", "science", "psf", "science"]
    assert [m.expname for m in a.science] == ["s1_calints.fits", "s2_calints.fits"]   # ASN order kept
    assert [m.expname for m in a.psf] == ["r1_calints.fits", "r2_calints.fits"]


def test_paths_relative_to_asn_folder(tmp_path, monkeypatch):
    sub = tmp_path / "obs"; sub.mkdir()
    members = [{"expname": "data/s_calints.fits", "exptype": "science"},
               {"expname": str(tmp_path / "elsewhere" / "r_calints.fits"), "exptype": "psf"}]
    (tmp_path / "elsewhere").mkdir(); (tmp_path / "elsewhere" / "r_calints.fits").write_bytes(b"x")
    p = write_asn(sub, asn_dict(members), files=False)
    (sub / "data").mkdir(); (sub / "data" / "s_calints.fits").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)                                  # the working folder does not matter
    a = read_asn(Path("obs") / "my_asn.json")
    assert a.path == sub / "my_asn.json"
    assert a.members[0].path == sub / "data" / "s_calints.fits"
    assert a.members[1].path == tmp_path / "elsewhere" / "r_calints.fits"


def test_missing_pool_and_derived_id(tmp_path):
    a = read_asn(write_asn(tmp_path, asn_dict(asn_pool=None)))
    assert a.asn_pool == ""
    d = asn_dict(); del d["asn_id"]
    assert read_asn(write_asn(tmp_path, d, "noid_asn.json")).asn_id == "a3001"   # from jw00001-a3001_...


BAD = [  # (name, ASN content, expected message after "<asn path>: ")
    ("empty", "", "association file is empty"),
    ("blank", "  \n\t", "association file is empty"),
    ("not json", "asn_id = a3001", r"not valid JSON: Expecting value \(line 1, column 1\)"),
    ("single quotes", "{'asn_id': 'a3001'}", "not valid JSON"),
    ("cut short", json.dumps(asn_dict())[:60], "not valid JSON"),
    ("a list", "[]", "expected a JSON object, found a list"),
    ("a string", '"coron3"', "expected a JSON object, found a str"),
    ("no products", asn_dict(products=None), r"no 'products' list \(or it is empty\)"),
    ("products empty", asn_dict(products=[]), "no 'products' list"),
    ("products not list", asn_dict(products={"name": "x"}), "no 'products' list"),
    ("product not object", asn_dict(products=["x"]), r"products\[0\] is not an object"),
    ("no name", asn_dict(products=[{"members": GOOD}]), r"products\[0\] has no 'name'"),
    ("empty name", asn_dict(products=[{"name": " ", "members": GOOD}]), r"products\[0\] has no 'name'"),
    ("no members", asn_dict(products=[{"name": "p"}]), "product 'p' has no 'members'"),
    ("members empty", asn_dict([]), "product 'jw00001-a3001_t001_nircam_f430m-maskrnd' has no 'members' \\(or the list is empty\\)"),
    ("members not list", asn_dict({"expname": "a"}), "product .* has no 'members'"),
    ("member not object", asn_dict(GOOD + ["jw3_calints.fits"]), "member 2 is not an object: 'jw3_calints.fits'"),
    ("no expname", asn_dict(GOOD + [{"exptype": "psf"}]), "member 2 has no 'expname'"),
    ("expname not str", asn_dict(GOOD + [{"expname": 3, "exptype": "psf"}]), "member 2 has no 'expname'"),
    ("no exptype", asn_dict(GOOD + [{"expname": "jw3_calints.fits"}]), r"member 2 \(jw3_calints.fits\) has no 'exptype'"),
    ("unknown exptype", asn_dict(GOOD + [{"expname": "jw3_calints.fits", "exptype": "background"}]),
     r"member 2 \(jw3_calints.fits\): unknown exptype 'background' \(expected science or psf\)"),
    ("twice", asn_dict(GOOD + [dict(GOOD[1])]), r"member 2 \(jw2_nrcalong_calints.fits\) is listed twice \(also member 1\)"),
    ("no science", asn_dict(GOOD[1:]), r"no science member"),
    ("no psf", asn_dict(GOOD[:1]), r"no psf member"),
    ("only psf-like names", asn_dict([dict(GOOD[0], exptype="psf"), GOOD[1]]), "no science member"),
    ("bad asn_id", asn_dict(asn_id=7), "'asn_id' must be a non-empty string, not 7"),
    ("empty asn_id", asn_dict(asn_id=""), "'asn_id' must be a non-empty string"),
    ("no asn_id anywhere", {"products": [{"name": "my_target", "members": GOOD}]},
     "no 'asn_id', and none in the product name 'my_target'"),
]


@pytest.mark.parametrize("content, message", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_malformed(tmp_path, content, message):
    p = write_asn(tmp_path, content)
    with pytest.raises(AsnError, match=f"^{p}: {message}"):
        read_asn(p)


def test_missing_member_file(tmp_path):
    p = write_asn(tmp_path, asn_dict(), files=False)
    (tmp_path / "jw1_nrcalong_calints.fits").write_bytes(b"x")
    with pytest.raises(AsnError, match=rf"^{p}: member 1 \(jw2_nrcalong_calints.fits\): file not found at {tmp_path}/jw2"):
        read_asn(p)
    a = read_asn(p, check_files=False)                           # the option to skip the check
    assert not a.psf[0].path.exists()


def test_missing_and_folder_and_binary(tmp_path):
    with pytest.raises(AsnError, match="nothere.json: association file not found"):
        read_asn(tmp_path / "nothere.json")
    with pytest.raises(AsnError, match="is a folder"):
        read_asn(tmp_path)
    p = tmp_path / "bin_asn.json"; p.write_bytes(b"\xff\xfe\x00\x81 binary")
    with pytest.raises(AsnError, match="bin_asn.json: "):
        read_asn(p)


def test_error_family(tmp_path):
    with pytest.raises(InputError):                              # AsnError is an InputError: the CLI's exit 2
        read_asn(tmp_path / "x.json")


def test_several_products_are_never_silently_dropped(tmp_path):
    "An ASN with two products: read_asn refuses to guess (naming both); product=K picks one; read_products gives each."
    from coronlit.asn import read_products
    d = asn_dict()
    d["products"].append({"name": "other", "members": GOOD})
    path = write_asn(tmp_path, d)
    with pytest.raises(AsnError, match=r"2 products \(jw00001-a3001_t001_nircam_f430m-maskrnd, other\); one coron3 run reduces one"):
        read_asn(path)
    assert read_asn(path, product=0).product_name == "jw00001-a3001_t001_nircam_f430m-maskrnd"
    assert read_asn(path, product=1).product_name == "other"
    assert [a.product_name for a in read_products(path)] == ["jw00001-a3001_t001_nircam_f430m-maskrnd", "other"]


# ---------------------------------------------------------------- product names (the spec's examples)

@pytest.mark.parametrize("expname, root", [
    ("jw8607342001_02102_00001_nrcb3_calints.fits", "jw8607342001_02102_00001_nrcb3"),
    ("jw10005009001_02102_00001_nrcalong_calints.fits", "jw10005009001_02102_00001_nrcalong"),
    ("sub/dir/jw1_mirimage_calints.fits", "jw1_mirimage"),
    ("jw1_mirimage_calints.FITS", "jw1_mirimage"),
    ("jw1_mirimage_rateints.fits", "jw1_mirimage"),
    ("target.fits", "target"),
    ("calints_of_mine.fits", "calints_of_mine"),
])
def test_member_root(expname, root):
    assert member_root(expname) == root


def spec_asn(tmp_path):
    return Association(tmp_path / "asn.json", "a3001", "pool", "jw86073-a3001_t001_nircam_f140m-maskbar",
                       [Member(tmp_path / "jw8607342001_02102_00001_nrcb3_calints.fits", "science",
                               "jw8607342001_02102_00001_nrcb3_calints.fits")])


@pytest.mark.parametrize("suffix, use_member, name", [
    ("crfints", True, "jw8607342001_02102_00001_nrcb3_a3001_crfints.fits"),
    ("psfalign", True, "jw8607342001_02102_00001_nrcb3_a3001_psfalign.fits"),
    ("psfsub", True, "jw8607342001_02102_00001_nrcb3_a3001_psfsub.fits"),
    ("psfstack", False, "jw86073-a3001_t001_nircam_f140m-maskbar_psfstack.fits"),
    ("i2d", False, "jw86073-a3001_t001_nircam_f140m-maskbar_i2d.fits"),
])
def test_product_names_as_in_the_spec(tmp_path, suffix, use_member, name):
    a = spec_asn(tmp_path)
    m = a.science[0] if use_member else None
    assert product_path(a, suffix, m) == tmp_path / name
    assert product_path(a, suffix, m, output_dir=tmp_path / "out") == tmp_path / "out" / name


def test_exposure_based_needs_member(tmp_path):
    with pytest.raises(ValueError, match="psfalign is exposure-based"):
        product_path(spec_asn(tmp_path), "psfalign")
