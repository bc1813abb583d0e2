"""Real datasets for the tests, only through `coronlit.datasets`: a test that needs one is skipped, with the reason, where it
cannot be had (offline and no copy). CI points `CORONLIT_DATA` at its copy."""
from functools import lru_cache
from pathlib import Path
import pytest
from coronlit.datasets import available, asn_path, get_dataset

AUMIC = "aumic_f356w"


@lru_cache(None)
def fetched(name:str=AUMIC):
    "The fetched folder of `name`, or the one-line reason it cannot be had (fetched once per test process)."
    return available(name)


def folder(name:str=AUMIC) -> Path|None:
    "The dataset's folder, or None where it cannot be had."
    r = fetched(name)
    return None if isinstance(r, str) else r


def asn(name:str=AUMIC) -> Path|None:
    "The dataset's coron3 association, or None."
    d = folder(name)
    return None if d is None else asn_path(get_dataset(name), d)


def needs(name:str=AUMIC):
    "A skipif mark: skip where the dataset cannot be had, saying why."
    r = fetched(name)
    return pytest.mark.skipif(isinstance(r, str), reason=f"dataset {name} cannot be had: {r}")


def skip_without(name:str=AUMIC) -> Path:
    "The dataset's folder, or skip the calling test with the reason."
    r = fetched(name)
    if isinstance(r, str): pytest.skip(f"dataset {name} cannot be had: {r}")
    return r
