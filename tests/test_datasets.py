"""coronlit.datasets end to end: the AU Mic files served over HTTP on 127.0.0.1 by a server the test starts and stops, fetched
through CORONLIT_DATA_URL (download, checksum, cache, and a second fetch with the server gone); a corrupted download; a 404; the
command line's one-line errors."""
import functools, hashlib, http.server, json, os, shutil, subprocess, sys, threading
from pathlib import Path

import pytest

from coronlit import datasets
from coronlit.datasets import DATASETS, Dataset, DatasetError, fetch, asn_path, get_dataset
import realdata


class Server:
    "A static file server on 127.0.0.1 (an ephemeral port) for `folder`; `stop()` shuts it down."
    def __init__(self, folder, handler=None):
        h = handler or functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), h)
        self.httpd.RequestHandlerClass.log_message = lambda *a: None
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
    def stop(self):
        self.httpd.shutdown(); self.httpd.server_close()


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    "No local data folder, a private cache, no mirror."
    for k in (datasets.ENV_DATA, datasets.ENV_URL): monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv(datasets.ENV_CACHE, str(tmp_path / "cache"))
    return tmp_path


@pytest.fixture
def mirror(aumic_dir, tmp_path):
    "A plain copy of the AU Mic files (no links) to serve."
    d = tmp_path / "mirror"; d.mkdir()
    for n in get_dataset("aumic_f356w").files: shutil.copyfile(aumic_dir / n, d / n)
    return d


def test_download_checksum_cache_then_offline(clean_env, mirror, monkeypatch):
    srv = Server(mirror)
    monkeypatch.setenv(datasets.ENV_URL, srv.url)
    try:
        got = fetch("aumic_f356w")
    finally:
        srv.stop()
    ds = get_dataset("aumic_f356w")
    assert got == clean_env / "cache" / "aumic_f356w"
    assert sorted(p.name for p in got.iterdir()) == sorted([*ds.files, asn_path(ds, got).name])
    for n, h in ds.files.items():   # real files, byte-identical to the registry's
        assert not (got / n).is_symlink() and hashlib.sha256((got / n).read_bytes()).hexdigest() == h
    asn = json.loads(asn_path(ds, got).read_text())
    assert [m["expname"] for m in asn["products"][0]["members"]] == list(ds.science + ds.psf)
    assert fetch("aumic_f356w") == got          # the server is gone: the cache serves
    from coronlit.asn import read_asn
    a = read_asn(asn_path(ds, got))
    assert (len(a.science), len(a.psf), a.product_name) == (2, 6, ds.product)


def test_corrupted_download_leaves_nothing(clean_env, mirror, monkeypatch):
    ds = get_dataset("aumic_f356w")
    bad = ds.psf[2]
    b = bytearray((mirror / bad).read_bytes()); b[50_000] ^= 0xFF; (mirror / bad).write_bytes(bytes(b))
    srv = Server(mirror)
    monkeypatch.setenv(datasets.ENV_URL, srv.url)
    try:
        with pytest.raises(DatasetError, match=f"{bad}: dataset aumic_f356w: checksum mismatch in the download from {srv.url}{bad}"):
            fetch("aumic_f356w")
    finally:
        srv.stop()
    cache = clean_env / "cache" / "aumic_f356w"
    left = sorted(p.name for p in cache.iterdir())
    assert bad not in left and not [n for n in left if n.endswith(".tmp") or n.startswith("tmp")], left
    assert not asn_path(ds, cache).exists()      # no association for an incomplete set


def test_http_404(clean_env, tmp_path, monkeypatch):
    empty = tmp_path / "empty"; empty.mkdir()
    srv = Server(empty)
    monkeypatch.setenv(datasets.ENV_URL, srv.url)
    try:
        with pytest.raises(DatasetError, match=r"answered HTTP 404; to use a local copy, set CORONLIT_DATA to a folder that holds "
                                                r"nircam_aumic_f356w/"):
            fetch("aumic_f356w")
    finally:
        srv.stop()
    assert [p for p in (clean_env / "cache" / "aumic_f356w").iterdir()] == []


def test_local_copy_is_linked_never_written(aumic_dir, tmp_path, monkeypatch):
    "CORONLIT_DATA: the files are checked and linked into the output folder; the local copy is only read."
    src = tmp_path / "data" / "nircam_aumic_f356w"; src.mkdir(parents=True)
    ds = get_dataset("aumic_f356w")
    for n in ds.files: shutil.copyfile(aumic_dir / n, src / n)
    before = {p.name: p.stat().st_mtime_ns for p in src.iterdir()}
    monkeypatch.setenv(datasets.ENV_DATA, str(tmp_path / "data"))
    got = fetch("aumic_f356w", tmp_path / "out")
    assert got == tmp_path / "out" and all((got / n).resolve() == (src / n).resolve() for n in ds.files)
    assert {p.name: p.stat().st_mtime_ns for p in src.iterdir()} == before
    b = bytearray((src / ds.science[0]).read_bytes()); b[-10] ^= 1; (src / ds.science[0]).write_bytes(bytes(b))
    with pytest.raises(DatasetError, match=f"{ds.science[0]}: dataset aumic_f356w: checksum mismatch"):
        fetch("aumic_f356w", tmp_path / "out2")


def _cli(*args, env=None):
    e = {**os.environ, **(env or {})}
    return subprocess.run([str(Path(sys.executable).parent / "coronlit"), *args], capture_output=True, text=True, env=e, timeout=120)


def test_cli_errors_are_one_line_exit_2(tmp_path):
    r = _cli("fetch", "hr8799")
    assert r.returncode == 2 and r.stderr.strip() == "coronlit: error: unknown dataset 'hr8799'; known datasets: aumic_f356w"
    srv = Server(tmp_path)   # answers 404 for everything
    srv.stop()               # ... and now nothing answers: offline with no copy
    env = {datasets.ENV_CACHE: str(tmp_path / "c"), datasets.ENV_URL: srv.url, datasets.ENV_DATA: ""}
    r = _cli("-q", "fetch", "aumic_f356w", env=env)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "dataset aumic_f356w: cannot download " + srv.url in r.stderr and "set CORONLIT_DATA" in r.stderr
    r = _cli("fetch", "aumic_f356w", env=env)     # not quiet: a log line says what it tried, then the one error line
    errors = [l for l in r.stderr.splitlines() if l.startswith("coronlit: error:")]
    assert r.returncode == 2 and len(errors) == 1 and r.stderr.strip().splitlines()[-1] == errors[0], r.stderr
    r = _cli("fetch", "--list")
    assert r.returncode == 0 and r.stdout.startswith("aumic_f356w")


@realdata.needs()
def test_cli_fetch_prints_the_folder(tmp_path):
    r = _cli("fetch", "aumic_f356w", "-o", str(tmp_path / "au"))
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip()) == tmp_path / "au" and (tmp_path / "au" / "aumic_f356w_coron3_asn.json").is_file()
