"""The tracking-URI check: schemes, SQLite folders, servers reached with a short timeout."""

from __future__ import annotations

import http.server
import threading
import time

import pytest

from harness.tracking.uri import TrackingUriError, check_tracking_uri, mask_uri


class _Server:
    """A local HTTP server whose ``/health`` answers ``status``."""

    def __init__(self, status: int):
        outer = self
        self.paths: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.paths.append(self.path)
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"OK")

            def log_message(self, *args):
                pass

        self.httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize(("status", "ok"), [(200, True), (401, True), (403, True),
                                            (404, False), (502, False)])
def test_http_server_is_probed_at_health(status, ok):
    server = _Server(status)
    try:
        if ok:
            check_tracking_uri(server.url + "/", "--tracking-uri")
        else:
            with pytest.raises(TrackingUriError, match=f"answered HTTP {status}"):
                check_tracking_uri(server.url, "--tracking-uri")
        assert server.paths == ["/health"]
    finally:
        server.close()


def test_a_silent_server_is_refused_after_the_timeout():
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts the connection, never answers
    port = listener.getsockname()[1]
    try:
        t0 = time.monotonic()
        with pytest.raises(TrackingUriError, match="cannot reach"):
            check_tracking_uri(f"http://127.0.0.1:{port}", "--tracking-uri", timeout=0.5)
        assert time.monotonic() - t0 < 3
    finally:
        listener.close()


def test_sqlite_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check_tracking_uri("sqlite:///mlflow.db", "x")  # a new store in an existing folder
    check_tracking_uri(f"sqlite:///{tmp_path}/m.db", "x")
    check_tracking_uri("runs.db", "x")  # a bare .db path is an SQLite file
    with pytest.raises(TrackingUriError, match="no MLflow store"):
        check_tracking_uri("sqlite:///mlflow.db", "x", must_exist=True)
    (tmp_path / "mlflow.db").write_bytes(b"")
    check_tracking_uri("sqlite:///mlflow.db", "x", must_exist=True)
    with pytest.raises(TrackingUriError, match="does not exist"):
        check_tracking_uri(f"sqlite:///{tmp_path}/new/m.db", "x")
    assert not (tmp_path / "new").exists()
    check_tracking_uri(f"file://{tmp_path}/mlruns", "x")
    with pytest.raises(TrackingUriError, match="no MLflow file store"):
        check_tracking_uri(f"file://{tmp_path}/mlruns", "x", must_exist=True)


def test_remote_uri_not_probed_when_asked():
    check_tracking_uri("http://10.0.0.1:5000", "--tracking-uri", probe=False)
    with pytest.raises(TrackingUriError, match="scheme 'ftp'"):
        check_tracking_uri("ftp://x", "--tracking-uri", probe=False)


def test_mask_uri_hides_credentials():
    assert mask_uri("https://alice:s3cret@host:5000/p") == "https://alice:***@host:5000/p"
    assert mask_uri("postgresql://u:p@db/x") == "postgresql://u:***@db/x"
    assert mask_uri("http://host:5000") == "http://host:5000"
    with pytest.raises(TrackingUriError) as err:
        check_tracking_uri("https://alice:s3cret@127.0.0.1:1", "--tracking-uri")
    assert "s3cret" not in str(err.value)
