"""coronlit.dq: the bad_bits parser agrees with itself in every spelling, and with astropy/jwst semantics."""
import numpy as np
import pytest
from astropy.nddata.bitmask import bitfield_to_boolean_mask
from hypothesis import given, settings, strategies as st

from coronlit.core import InputError
from coronlit.dq import ALL_BITS, DQ, bad_mask, dq_names, interpret_bit_flags

BITS = [n for n, v in DQ.items() if v]                       # the 32 single-bit names


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(BITS), min_size=1, max_size=6, unique=True), st.sampled_from([", ", ",", "+", " + "]))
def test_names_numbers_and_sum_agree(names, sep):
    total = sum(DQ[n] for n in names)
    assert interpret_bit_flags(sep.join(names)) == total
    assert interpret_bit_flags(sep.join(n.lower() for n in names)) == total
    assert interpret_bit_flags(", ".join(str(DQ[n]) for n in names)) == total
    assert interpret_bit_flags(str(total)) == total == interpret_bit_flags(total)
    assert interpret_bit_flags("~" + "+".join(names)) == ALL_BITS ^ total
    assert sorted(dq_names(total)) == sorted(names)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from(BITS), min_size=1, max_size=4, unique=True), st.integers(0, 2**32 - 1))
def test_bad_mask_is_astropys_complement(names, seed):
    """bad_mask(dq, bits) is True exactly where astropy (as jwst) would call the pixel not good for good_bits=~bits."""
    dq = np.random.default_rng(seed).integers(0, 2**32, (5, 7), dtype=np.uint64).astype(np.uint32)
    bits = interpret_bit_flags(",".join(names))
    # astropy: True where a pixel has any bit *not* in ignore_flags; ignore everything but `bits`
    theirs = bitfield_to_boolean_mask(dq, ignore_flags=ALL_BITS ^ bits, good_mask_value=False, dtype=bool)
    assert np.array_equal(bad_mask(dq, bits), theirs)


@pytest.mark.parametrize("spec", ["", "  ", None, "None", "none"])
def test_nothing_is_bad(spec):
    assert interpret_bit_flags(spec) is None
    assert not bad_mask(np.full((2, 2), ALL_BITS, np.uint32), spec).any()


@pytest.mark.parametrize("spec, fragment", [
    ("OUTLIER, COSMIC_RAY", "unknown DQ flag name 'COSMIC_RAY'"),
    ("16, 3", "not powers of two"),
    ("DO_NOT_USE, ~OUTLIER", "'DO_NOT_USE, ~OUTLIER'"),
    ("16,,2", "'16,,2'"),
    (2.0, "bad_bits must be a string or an int"),
    (True, "bad_bits must be a string or an int"),
])
def test_bad_specs(spec, fragment):
    with pytest.raises(InputError, match=fragment.replace("(", r"\(")):
        interpret_bit_flags(spec)


def test_spec_examples():
    """The spec (align_refs.rst): "OUTLIER, SATURATED" == "16, 2" == "18"; "" and None: no bad pixels."""
    assert interpret_bit_flags("OUTLIER, SATURATED") == interpret_bit_flags("16, 2") == interpret_bit_flags("18") == 18
    # jwst's resample default good_bits "~DO_NOT_USE+NON_SCIENCE": bad = DO_NOT_USE or NON_SCIENCE
    bad = ALL_BITS ^ interpret_bit_flags("~DO_NOT_USE+NON_SCIENCE")
    assert bad == 1 | 512
