"Shared fixtures: the real datasets (through coronlit.datasets, skipped with the reason where they cannot be had)."
import pytest
import realdata


@pytest.fixture(scope="session")
def aumic_dir():
    "The fetched AU Mic F356W folder (8 _calints, 8 _psfmask and a coron3 association)."
    return realdata.skip_without(realdata.AUMIC)


@pytest.fixture(scope="session")
def aumic_asn(aumic_dir):
    "The coron3 association of the AU Mic F356W set."
    return realdata.asn(realdata.AUMIC)
