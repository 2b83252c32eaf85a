"""``download``: against a local HTTP server on 127.0.0.1 (resume with Range, checksums,
server-given names, OSF listing, zip extraction); real hosts only with
``BRAINDECODE_SPEECH_NETWORK=1``."""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from braindecode_speech.cli import main
from braindecode_speech.data.studies.download import (
    SOURCES,
    DownloadError,
    RemoteFile,
    download,
    download_file,
    osf_files,
)


class FileServer:
    """A tiny HTTP server: ``files`` (path → bytes, optional ``names`` for
    Content-Disposition), JSON ``pages``, Range support that can be switched off, and a
    ``cut`` (path → bytes after which the connection drops)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.names: dict[str, str] = {}
        self.pages: dict[str, dict] = {}
        self.cut: dict[str, int] = {}
        self.ranges = True
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the test output quiet
                pass

            def do_GET(self):  # noqa: N802 - http.server's naming
                server.requests.append((self.path, self.headers.get("Range")))
                if self.path in server.pages:
                    body = json.dumps(server.pages[self.path]).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if self.path not in server.files:
                    self.send_error(404)
                    return
                data = server.files[self.path]
                start = 0
                requested = self.headers.get("Range")
                if requested and server.ranges:
                    start = int(requested.removeprefix("bytes=").split("-")[0])
                    if start >= len(data):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                if self.path in server.names:
                    self.send_header("Content-Disposition",
                                     f'attachment; filename="{server.names[self.path]}"')
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                stop = server.cut.pop(self.path, len(data))
                self.wfile.write(data[start:stop])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = FileServer()
    yield srv
    srv.close()


def _payload(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    return buffer.getvalue()


def test_interrupted_download_resumes_with_a_range_request(server, tmp_path):
    data = _payload(300_000)
    server.files["/data.bin"] = data
    server.cut["/data.bin"] = 120_000  # the connection drops after 120 kB
    remote = RemoteFile(f"{server.url}/data.bin", "sub/data.bin", size=len(data),
                        sha256=hashlib.sha256(data).hexdigest())
    with pytest.raises(DownloadError, match="interrupted after 120000 bytes.*run again"):
        download_file(remote, tmp_path, progress=False)
    part = tmp_path / "sub" / "data.bin.part"
    assert part.stat().st_size == 120_000 and not (tmp_path / "sub" / "data.bin").exists()
    path = download_file(remote, tmp_path, progress=False)
    assert path.read_bytes() == data and not part.exists()
    assert server.requests[-1] == ("/data.bin", "bytes=120000-")
    download_file(remote, tmp_path, progress=False)  # already there: no request
    assert len(server.requests) == 2


def test_server_ignoring_range_and_complete_part_file(server, tmp_path):
    data = _payload(50_000, seed=1)
    server.files["/a.bin"] = data
    remote = RemoteFile(f"{server.url}/a.bin", "a.bin", md5=hashlib.md5(data).hexdigest())
    (tmp_path / "a.bin.part").write_bytes(b"garbage!")
    server.ranges = False  # answers 200 with the whole file: the part is restarted
    assert download_file(remote, tmp_path, progress=False).read_bytes() == data
    server.ranges = True
    (tmp_path / "a.bin").rename(tmp_path / "a.bin.part")  # complete part: the server says 416
    assert download_file(remote, tmp_path, progress=False).read_bytes() == data


def test_checksum_mismatch_is_an_error_and_deletes_the_part_file(server, tmp_path):
    server.files["/b.bin"] = _payload(10_000, seed=2)
    remote = RemoteFile(f"{server.url}/b.bin", "b.bin", sha256="0" * 64)
    with pytest.raises(DownloadError, match=r"b.bin: sha256 checksum mismatch for .*/b.bin "
                                            r"\(expected 0{64}, got [0-9a-f]{64}\)"):
        download_file(remote, tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_file(RemoteFile(f"{server.url}/nothing", "x"), tmp_path, progress=False)


def _osf_item(server, path: str, content: bytes) -> dict:
    server.files[f"/download{path}"] = content
    return {"attributes": {"kind": "file", "name": Path(path).name, "materialized_path": path,
                           "size": len(content),
                           "extra": {"hashes": {"sha256": hashlib.sha256(content).hexdigest(),
                                                "md5": hashlib.md5(content).hexdigest()}}},
            "links": {"download": f"{server.url}/download{path}"}}


def test_gwilliams_from_the_osf_listing(server, tmp_path):
    api = f"{server.url}/osf"
    folder = {"attributes": {"kind": "folder", "materialized_path": "/sub-01/"},
              "relationships": {"files": {"links": {"related": {
                  "href": f"{api}/folders/sub-01/"}}}}}
    server.pages["/osf/nodes/ag3kj/files/osfstorage/"] = {
        "data": [_osf_item(server, "/dataset_description.json", b"{}"), folder],
        "links": {"next": f"{api}/nodes/ag3kj/files/osfstorage/?page=2"}}
    server.pages["/osf/nodes/ag3kj/files/osfstorage/?page=2"] = {
        "data": [_osf_item(server, "/participants.tsv", b"participant_id\nsub-01\n")],
        "links": {"next": None}}
    server.pages["/osf/folders/sub-01/"] = {
        "data": [_osf_item(server, "/sub-01/ses-0/meg/sub-01_ses-0_task-0_meg.con",
                           _payload(5000))], "links": {"next": None}}
    server.pages["/osf/nodes/h2tzn/files/osfstorage/"] = {
        "data": [_osf_item(server, "/stimuli/audio/lw1_0.wav", b"RIFF")], "links": {}}
    server.pages["/osf/nodes/u5327/files/osfstorage/"] = {"data": [], "links": {}}
    assert [f.path for f in osf_files("ag3kj", api)] == [
        "dataset_description.json", "participants.tsv",
        "sub-01/ses-0/meg/sub-01_ses-0_task-0_meg.con"]
    folder_out = download("gwilliams2022", tmp_path / "masc", base_url=api, progress=False)
    assert sorted(str(p.relative_to(folder_out)) for p in folder_out.rglob("*")
                  if p.is_file() and p.name != ".download-names.json") == [
        "dataset_description.json", "participants.tsv", "stimuli/audio/lw1_0.wav",
        "sub-01/ses-0/meg/sub-01_ses-0_task-0_meg.con"]
    assert (folder_out / "participants.tsv").read_bytes() == b"participant_id\nsub-01\n"


def test_brennan_file_names_from_the_server_and_extraction(server, tmp_path):
    ids = [f.url for f in SOURCES["brennan2019"].files]
    assert len(ids) == 56
    for i, file_id in enumerate(ids):
        server.files[f"/deepblue/{file_id}"] = f"file {i}".encode()
        server.names[f"/deepblue/{file_id}"] = f"S{i + 1:02d}.mat"
    server.files[f"/deepblue/{ids[-2]}"] = _zip({"audio/DownTheRabbitHoleFinal_SoundFile1.wav":
                                                 b"RIFF"})
    server.names[f"/deepblue/{ids[-2]}"] = "audio.zip"
    server.files[f"/deepblue/{ids[-1]}"] = _zip({"proc/S01.mat": b"MATLAB"})
    server.names[f"/deepblue/{ids[-1]}"] = "proc.zip"
    folder = download("brennan2019", tmp_path / "alice", base_url=f"{server.url}/deepblue",
                      progress=False)
    assert (folder / "S01.mat").read_bytes() == b"file 0"
    assert (folder / "audio" / "DownTheRabbitHoleFinal_SoundFile1.wav").read_bytes() == b"RIFF"
    assert (folder / "proc" / "S01.mat").read_bytes() == b"MATLAB"
    names = json.loads((folder / ".download-names.json").read_text())
    assert names[f"{server.url}/deepblue/{ids[-1]}"] == "proc.zip"
    n_requests = len(server.requests)
    download("brennan2019", folder, base_url=f"{server.url}/deepblue", progress=False)
    assert len(server.requests) == n_requests  # names are known: nothing fetched again


def test_broderick_nested_zip_is_extracted(server, tmp_path):
    inner = _zip({"Natural Speech/Stimuli/Text/Run1.mat": b"words"})
    outer = _zip({"Natural Speech.zip": inner, "N400.zip": _zip({"N400/x": b""})})
    server.files["/dryad/doi%253A10.5061%252Fdryad.070jc/download"] = outer
    folder = download("broderick2019", tmp_path, base_url=f"{server.url}/dryad",
                      progress=False)
    assert (folder / "Natural Speech" / "Stimuli" / "Text" / "Run1.mat").read_bytes() == b"words"
    assert not (folder / "N400").exists()  # only Natural Speech is used


def test_mous_prints_the_registration_steps(tmp_path, capsys):
    assert main(["download", "--study", "schoffelen2019", "--to", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "DSC_3011020.09_236_v1" in out and "WebMAUS" in out
    assert "braindecode-speech check --study schoffelen2019" in out


@pytest.mark.network
@pytest.mark.skipif(os.environ.get("BRAINDECODE_SPEECH_NETWORK") != "1",
                    reason="set BRAINDECODE_SPEECH_NETWORK=1 to reach the real hosts")
def test_real_osf_listing():
    first = next(osf_files("ag3kj"))
    assert first.path and first.url.startswith("https://")
