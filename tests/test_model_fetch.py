"""`astroapp model fetch`: a real HTTP server on 127.0.0.1 serving a generated weights file.

The server honours Range requests and can drop the connection part-way through a body, so
digest checks, resumption and the offline message are exercised over real sockets.
"""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading

import pytest
import torch

from astroapp.cli import main
from astroapp.fetch import (
    PUBLISHED,
    FetchError,
    PublishedWeights,
    fetch,
    find_weights,
    weights_home,
)
from astroapp.progress import Progress


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        srv = self.server
        srv.requests.append(self.headers.get("Range"))
        if self.path != "/weights.pth":
            self.send_error(404)
            return
        data = srv.payload
        start = 0
        rng = self.headers.get("Range")
        if rng and srv.ranges:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.drop_after is not None:
            cut, srv.drop_after = srv.drop_after, None  # only the first transfer is cut
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.payload = b""
    srv.ranges = True
    srv.drop_after = None
    srv.requests = []
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/weights.pth"
    yield srv
    srv.shutdown()
    srv.server_close()


def _payload(size: int = 300_000) -> bytes:
    return torch.randint(0, 256, (size,), generator=torch.Generator().manual_seed(1),
                         dtype=torch.uint8).numpy().tobytes()


def _spec(data: bytes, prefix_only: bool = False) -> PublishedWeights:
    digest = hashlib.sha256(data).hexdigest()
    if prefix_only:
        return PublishedWeights("test", f"test-{digest[:8]}.pth", "unused", "tests",
                                sha256_prefix=digest[:8])
    return PublishedWeights("test", "test.pth", "unused", "tests", sha256=digest, size=len(data))


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/weights.pth"


def test_good_digest_installs_atomically(server, tmp_path):
    server.payload = _payload()
    for prefix_only in (False, True):
        spec = _spec(server.payload, prefix_only)
        seen: list[Progress] = []
        path = fetch(spec, url=server.url, dest_dir=tmp_path, progress=seen.append)
        assert path == tmp_path / spec.filename
        # "download" events: bytes done, monotone, up to the whole file, named by the file
        assert {(e.stage, e.item, e.total) for e in seen} == {
            ("download", spec.filename, len(server.payload))}
        assert [e.done for e in seen] == sorted(e.done for e in seen)
        assert seen[-1].done == len(server.payload)
        assert path.read_bytes() == server.payload
        assert not list(tmp_path.glob("*.part"))
    # Already installed with the right digest: no second download.
    n = len(server.requests)
    fetch(_spec(server.payload), url=server.url, dest_dir=tmp_path)
    assert len(server.requests) == n


def test_bad_digest_is_refused_and_nothing_installed(server, tmp_path):
    server.payload = _payload()
    spec = _spec(b"another file")
    with pytest.raises(FetchError, match="refused test.pth .*nothing was installed"):
        fetch(spec, url=server.url, dest_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []  # neither the file nor its .part


def test_interrupted_transfer_resumes_from_part_file(server, tmp_path):
    server.payload = _payload()
    server.drop_after = 100_000
    spec = _spec(server.payload)
    with pytest.raises(FetchError, match="run the same command again to resume"):
        fetch(spec, url=server.url, dest_dir=tmp_path)
    part = tmp_path / "test.pth.part"
    assert part.stat().st_size == 100_000 and not (tmp_path / "test.pth").exists()
    path = fetch(spec, url=server.url, dest_dir=tmp_path)
    assert path.read_bytes() == server.payload and not part.exists()
    assert server.requests[-1] == "bytes=100000-"  # continued, not restarted


def test_server_without_range_support_restarts(server, tmp_path):
    server.payload = _payload()
    server.ranges = False
    (tmp_path / "test.pth.part").write_bytes(server.payload[:5000])
    path = fetch(_spec(server.payload), url=server.url, dest_dir=tmp_path)
    assert path.read_bytes() == server.payload


def test_unpinned_entry_needs_explicit_digest(server, tmp_path):
    server.payload = _payload(1000)
    spec = PublishedWeights("free", "free.pth", server.url, "tests")
    with pytest.raises(FetchError, match="no digest is pinned .*--sha256"):
        fetch(spec, dest_dir=tmp_path)
    with pytest.raises(FetchError, match="64 hex digits"):
        fetch(spec, dest_dir=tmp_path, sha256="abc")
    digest = hashlib.sha256(server.payload).hexdigest()
    assert fetch(spec, dest_dir=tmp_path, sha256=digest).is_file()


def test_cli_offline_names_url_and_destination(capsys):
    url = _closed_port_url()
    assert main(["model", "fetch", "earthloc", "--url", url, "--no-progress"]) == 2
    err = capsys.readouterr().err
    dest = weights_home() / "earthloc-8b632e30.pth"
    assert url in err and str(dest) in err and "Traceback" not in err
    assert err.startswith("astroapp: error: cannot download earthloc")


def test_cli_pinned_prefix_refuses_a_different_file(server, capsys):
    server.payload = _payload(5000)  # not torchgeo's file: its digest cannot start with 8b632e30
    assert main(["model", "fetch", "earthloc", "--url", server.url, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "expected a sha256 starting with 8b632e30" in err and "nothing was installed" in err
    assert find_weights("earthloc") is None


def test_cli_fetch_then_list_shows_installed(server, capsys, tmp_path):
    server.payload = _payload(20_000)
    digest = hashlib.sha256(server.payload).hexdigest()
    assert main(["model", "list"]) == 0
    out = capsys.readouterr().out
    for name in PUBLISHED:
        assert name in out
    assert "installed:" not in out.split("published weight files")[1]
    assert main(["model", "fetch", "sift-lightglue", "--url", server.url, "--sha256", digest,
                 "--no-progress"]) == 0
    installed = find_weights("lightglue-sift")
    assert installed is not None and installed.read_bytes() == server.payload
    assert main(["model", "list"]) == 0
    out = capsys.readouterr().out.split("published weight files")[1]
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("sift-lightglue"))
    assert f"installed: {installed}" in line
    assert main(["model", "fetch", "nope"]) == 2
    assert "no published weights named 'nope'" in capsys.readouterr().err


def test_earthloc_finds_fetched_file_by_default(tmp_path):
    from astroapp.retrieval import build_model, default_weights, load_model
    from astroapp.retrieval.earthloc import to_torchgeo_keys

    model = build_model("earthloc")
    path = weights_home() / "earthloc-8b632e30.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(to_torchgeo_keys(model.state_dict()), path)
    assert default_weights("earthloc") == path
    loaded = load_model("earthloc", device="cpu")
    assert loaded.weights_path == str(path)
    explicit = tmp_path / "mine.pt"
    torch.save(model.state_dict(), explicit)
    assert load_model("earthloc", weights=str(explicit), device="cpu").weights_path == str(explicit)
