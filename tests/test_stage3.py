"""Stage 3 routed by EXP_TYPE: the table against pipeline_modules.rst's rows, and `coronlit stage3` on good and bad
associations (exit 2, one line naming the EXP_TYPE and the pipeline, or the files)."""
import json
from pathlib import Path
import pytest
from astropy.io import fits

from coronlit.cli import main
from coronlit.router import STAGE3, route, stage3
from coronlit.imsynth import make_image_set

# pipeline_modules.rst, "The following table lists the pipeline modules that get applied to each EXP_TYPE": the
# EXP_TYPE column and the Stage 3 column, row by row as the spec writes them (N/A: none).
SPEC_ROWS = """
FGS_IMAGE calwebb_image3 | FGS_FOCUS N/A | FGS_DARK N/A | FGS_SKYFLAT FGS_INTFLAT N/A
MIR_IMAGE calwebb_image3 | MIR_MRS calwebb_spec3 | MIR_LRS-FIXEDSLIT calwebb_spec3 | MIR_LRS-SLITLESS calwebb_tso3
MIR_LYOT MIR_4QPM calwebb_coron3 | MIR_TACQ N/A | MIR_DARK N/A | MIR_FLATIMAGE MIR_FLATMRS N/A
NRC_IMAGE calwebb_image3 | NRC_CORON calwebb_coron3 | NRC_WFSS calwebb_spec3 | NRC_TSIMAGE calwebb_tso3 | NRC_TSGRISM calwebb_tso3
NRC_TACQ NRC_TACONFIRM NRC_FOCUS N/A | NRC_DARK N/A | NRC_FLAT NRC_LED N/A
NIS_IMAGE calwebb_image3 | NIS_WFSS calwebb_spec3 | NIS_SOSS calwebb_tso3 | NIS_AMI calwebb_ami3 | NIS_TACQ NIS_TACONFIRM NIS_FOCUS N/A
NIS_DARK N/A | NIS_LAMP N/A
NRS_FIXEDSLIT NRS_IFU NRS_MSASPEC calwebb_spec3 | NRS_BRIGHTOBJ calwebb_tso3
NRS_IMAGE NRS_TACQ NRS_TACONFIRM NRS_BOTA NRS_TASLIT NRS_CONFIRM NRS_FOCUS NRS_MIMF N/A | NRS_DARK N/A
NRS_AUTOWAVE NRS_AUTOFLAT NRS_LAMP N/A
"""


def spec_table() -> dict:
    out = {}
    for row in SPEC_ROWS.replace("\n", " | ").split("|"):
        words = row.split()
        if not words: continue
        *types, stage3_ = words
        for t in types: out[t] = None if stage3_ == "N/A" else stage3_
    return out


def test_table_is_the_spec():
    assert STAGE3 == spec_table()


def _member(folder, name, exp_type):
    fits.HDUList([fits.PrimaryHDU(header=fits.Header({"EXP_TYPE": exp_type}))]).writeto(folder / name, overwrite=True)
    return name


def _asn(folder, name, members, asn_type=""):
    p = folder / name
    p.write_text(json.dumps({"asn_type": asn_type, "products": [{"name": "p", "members": [{"expname": m, "exptype": "science"} for m in members]}]}))
    return p


@pytest.mark.parametrize("exp_type,kind", [("NRC_CORON", "coron3"), ("MIR_LYOT", "coron3"), ("MIR_4QPM", "coron3"),
                                           ("NRC_IMAGE", "image3"), ("MIR_IMAGE", "image3"), ("NIS_IMAGE", "image3"), ("FGS_IMAGE", "image3")])
def test_routes(tmp_path, exp_type, kind):
    assert route(_asn(tmp_path, "a.json", [_member(tmp_path, "x_cal.fits", exp_type)])) == kind


@pytest.mark.parametrize("exp_type,text", [
    ("NRS_IFU", "EXP_TYPE NRS_IFU is processed by calwebb_spec3 (jwst's Spec3Pipeline)"),
    ("NIS_AMI", "EXP_TYPE NIS_AMI is processed by calwebb_ami3 (jwst's Ami3Pipeline)"),
    ("NRC_TSIMAGE", "EXP_TYPE NRC_TSIMAGE is processed by calwebb_tso3 (jwst's Tso3Pipeline)"),
    ("NRC_DARK", "EXP_TYPE NRC_DARK has no stage-3 processing"),
    ("MIR_TACQ", "EXP_TYPE MIR_TACQ has no stage-3 processing"),
    ("NRS_FOCUS", "EXP_TYPE NRS_FOCUS has no stage-3 processing")])
def test_cli_exit_2_for_other_pipelines(tmp_path, capsys, exp_type, text):
    a = _asn(tmp_path, "a.json", [_member(tmp_path, "x_cal.fits", exp_type)])
    assert main(["-q", "stage3", str(a), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and text in err[0] and "a.json" in err[0], err


def test_mixed_exp_types_name_the_files(tmp_path, capsys):
    a = _asn(tmp_path, "mix.json", [_member(tmp_path, "i_cal.fits", "NRC_IMAGE"), _member(tmp_path, "c_calints.fits", "NRC_CORON")])
    assert main(["-q", "stage3", str(a), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "i_cal.fits is NRC_IMAGE, c_calints.fits is NRC_CORON" in err[0], err


def test_stage3_runs_image3(tmp_path, capsys):
    "A real image3 association goes through stage3 to image3 and writes its products; a bad one beside it fails alone."
    asn = make_image_set(tmp_path / "data", n_exp=2, shape=(128, 128), seed=3, nstars=30, ngal=3)
    bad = _asn(tmp_path, "dark.json", [_member(tmp_path, "d_cal.fits", "NRC_DARK")])
    res = stage3([asn, bad], tmp_path / "out", image3_options={"skip": ["tweakreg"], "npixels": 9})
    assert res[0].ok and not res[1].ok and res.exit_status == 2
    assert {Path(p).name for ps in res[0].paths.values() for p in ps} >= {"jw01234-o001_t001_nircam_clear-f444w_i2d.fits"}
