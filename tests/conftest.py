"Shared fixtures: where the real data live, and small simulated datasets."
import os
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]

def shared_dir() -> Path:
    "The project's shared/ folder: beside the repository (CI's layout), else /work/shared."
    for p in (ROOT.parent / "shared", Path("/work/shared")):
        if p.is_dir(): return p
    return ROOT.parent / "shared"

@pytest.fixture(scope="session")
def aumic_dir():
    d = shared_dir() / "data" / "nircam_aumic_f356w"
    if not d.is_dir(): pytest.skip(f"real AU Mic data not found at {d}")
    return d
