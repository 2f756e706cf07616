"""The https fetcher: SSRF refusals, pinned connections, redirects, caps and deadlines.

A loopback HTTPS server with a self-signed certificate (made here by the openssl CLI)
stands in for the internet. Reaching it needs either `fetch_allow_private` or, where a
test must keep the address check on, a policy that treats exactly that server's
address as public while every other address meets the real policy.
"""

from __future__ import annotations

import re
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from jobs.errors import InputInvalid, InputTooLarge, StorageUnavailable
from jobs.settings import Settings
from storage import fetch, read_uri
from storage.addresses import refusal_reason
from storage.fetch import fetch_https

BODY = b"\xff\xd8\xff" + b"jpeg-ish body " * 100
HUGE = 32 * 2**20


@dataclass
class Seen:
    """What the test server saw: request paths, Host headers, TLS SNI, bytes sent."""

    paths: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    sni: list[str | None] = field(default_factory=list)
    streamed: list[int] = field(default_factory=list)


class Handler(BaseHTTPRequestHandler):
    seen: Seen

    def log_message(self, format: str, *args: object) -> None:
        return None

    def do_GET(self) -> None:
        self.seen.paths.append(self.path)
        self.seen.hosts.append(self.headers.get("Host", ""))
        route, query = urlsplit(self.path).path, parse_qs(urlsplit(self.path).query)
        ROUTES.get(route, Handler.missing)(self, query)

    def ok(self, query: dict[str, list[str]]) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def redirect(self, query: dict[str, list[str]]) -> None:
        self.send_response(302)
        self.send_header("Location", query["to"][0])
        self.send_header("Content-Length", "0")
        self.end_headers()

    def chain(self, query: dict[str, list[str]]) -> None:
        left = int(query["n"][0])
        self.redirect({"to": [f"/chain?n={left - 1}" if left > 1 else "/ok"]})

    def missing(self, query: dict[str, list[str]]) -> None:
        self.send_error(404)

    def busy(self, query: dict[str, list[str]]) -> None:
        self.send_error(503)

    def declared_huge(self, query: dict[str, list[str]]) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(HUGE))
        self.end_headers()
        self.wfile.write(b"x" * 1000)

    def stream_huge(self, query: dict[str, list[str]]) -> None:
        self.send_response(200)  # HTTP/1.0, no length: the body runs until the socket closes
        self.end_headers()
        sent = 0
        try:
            while sent < HUGE:
                self.wfile.write(b"x" * 65536)
                sent += 65536
        except OSError:
            pass
        self.seen.streamed.append(sent)

    def drip_body(self, query: dict[str, list[str]]) -> None:
        self.send_response(200)
        self.end_headers()
        self._drip(lambda: self.wfile.write(b"x"))

    def drip_headers(self, query: dict[str, list[str]]) -> None:
        self.wfile.write(b"HTTP/1.0 200 OK\r\n")
        self._drip(lambda: self.wfile.write(b"X-Slow: 1\r\n"))

    def _drip(self, send: Callable[[], object]) -> None:
        deadline = time.monotonic() + 10
        try:
            while time.monotonic() < deadline:
                send()
                self.wfile.flush()
                time.sleep(0.1)
        except OSError:
            pass


ROUTES = {
    "/ok": Handler.ok,
    "/redirect": Handler.redirect,
    "/chain": Handler.chain,
    "/busy": Handler.busy,
    "/declared-huge": Handler.declared_huge,
    "/stream-huge": Handler.stream_huge,
    "/drip-body": Handler.drip_body,
    "/drip-headers": Handler.drip_headers,
}


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost, 127.0.0.1 and the names tests pin."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl CLI is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,DNS:pinned.test,DNS:public.test,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@dataclass
class HttpsServer:
    port: int
    seen: Seen
    cafile: Path

    def url(self, path: str, host: str = "localhost") -> str:
        return f"https://{host}:{self.port}{path}"


@pytest.fixture(scope="module")
def server(tls_files: tuple[Path, Path]) -> Iterator[HttpsServer]:
    cert, key = tls_files
    seen = Seen()
    handler = type("BoundHandler", (Handler,), {"seen": seen})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sock, name, ctx: seen.sni.append(name)  # type: ignore[assignment,func-returns-value]
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield HttpsServer(httpd.server_address[1], seen, cert)
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def loopback_ok() -> Settings:
    return Settings(fetch_allow_private=True, fetch_timeout_s=5)


@pytest.fixture
def pinned(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """`*.test` names resolve (once per lookup, counted) to the loopback test server."""
    lookups: list[str] = []
    real = fetch.resolve

    def resolve(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"] if host.endswith(".test") else real(host, port)

    monkeypatch.setattr(fetch, "resolve", resolve)
    return lookups


def test_fetches_from_a_pinned_address_with_the_right_sni_and_host(
    server: HttpsServer, loopback_ok: Settings
) -> None:
    assert fetch_https(server.url("/ok"), loopback_ok, cafile=server.cafile) == BODY
    assert server.seen.hosts[-1] == f"localhost:{server.port}"
    assert server.seen.sni[-1] == "localhost"


def test_connects_to_the_vetted_address_without_a_second_lookup(
    server: HttpsServer, loopback_ok: Settings, pinned: list[str]
) -> None:
    # 'pinned.test' exists in no DNS: the fetch works only if the connection goes to the
    # address vetted above instead of resolving the name again (DNS rebinding).
    url = server.url("/redirect?to=/chain%3Fn%3D1", host="pinned.test")

    assert fetch_https(url, loopback_ok, cafile=server.cafile) == BODY
    assert pinned == ["pinned.test"] * 3  # one lookup per hop: redirect, chain, ok
    assert server.seen.sni[-1] == "pinned.test"
    assert server.seen.hosts[-1] == f"pinned.test:{server.port}"


def test_tls_is_verified_against_the_system_store_by_default(
    server: HttpsServer, loopback_ok: Settings
) -> None:
    with pytest.raises(InputInvalid, match="certificate of localhost does not verify"):
        fetch_https(server.url("/ok"), loopback_ok)


def test_read_uri_fetches_https_through_the_same_rules(
    server: HttpsServer, loopback_ok: Settings
) -> None:
    # read_uri has no way to pass a test CA, so even the loopback server fails TLS there.
    with pytest.raises(InputInvalid, match="does not verify"):
        read_uri(server.url("/ok"), loopback_ok)
    with pytest.raises(InputInvalid, match="loopback"):
        read_uri(server.url("/ok"), Settings())


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://example.com/a.jpg", "only https:// inputs"),
        ("ftp://example.com/a.jpg", "only https:// inputs"),
        ("https://127.0.0.1/a.jpg", "127.0.0.1, a loopback address"),
        ("https://localhost/a.jpg", "a loopback address"),
        ("https://10.1.2.3/a.jpg", "a private address"),
        ("https://192.168.0.10/a.jpg", "a private address"),
        ("https://100.64.7.1/a.jpg", "carrier-grade NAT"),
        ("https://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("https://[fd00:ec2::254]/latest/meta-data/", "cloud metadata"),
        ("https://169.254.10.10/a.jpg", "link-local"),
        ("https://[::1]/a.jpg", "loopback"),
        ("https://[::ffff:127.0.0.1]/a.jpg", "loopback"),
        ("https://[fe80::1]/a.jpg", "link-local"),
        ("https://[fc00::5]/a.jpg", "unique local"),
        ("https://224.0.0.251/a.jpg", "multicast"),
        ("https://0.0.0.0/a.jpg", "unspecified"),
        ("https://2130706433/a.jpg", "127.0.0.1, a loopback"),  # 127.0.0.1 as one number
        ("https://user:pw@example.com/a.jpg", "credentials"),
    ],
)
def test_refused_before_any_connection(url: str, reason: str) -> None:
    with pytest.raises(InputInvalid, match=re.escape(reason)):
        fetch_https(url, Settings())


@pytest.mark.parametrize(
    "addresses", [["10.0.0.5"], ["93.184.215.14", "10.0.0.5"], ["2606:4700::1", "::1"]]
)
def test_a_name_resolving_to_any_private_address_is_refused(
    addresses: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fetch, "resolve", lambda host, port: addresses)

    with pytest.raises(InputInvalid, match=r"intranet\.example resolves to"):
        fetch_https("https://intranet.example/a.jpg", Settings())


@pytest.mark.parametrize(
    "target",
    [
        "https://10.0.0.7/a.jpg",
        "https://169.254.169.254/latest/meta-data/iam/",
        "https://[::1]/a.jpg",
        "https://private.test/a.jpg",
        "http://example.com/a.jpg",
    ],
)
def test_a_redirect_from_an_allowed_server_to_a_private_one_is_refused(
    target: str, server: HttpsServer, pinned: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Address checks stay on. Only the test server's own address counts as public, and
    # 'private.test' is made to resolve to a private address: each hop is vetted anew.
    real_pinned = fetch.resolve
    monkeypatch.setattr(
        fetch,
        "resolve",
        lambda host, port: ["10.9.9.9"] if host == "private.test" else real_pinned(host, port),
    )
    monkeypatch.setattr(
        fetch, "refusal_reason", lambda ip: None if ip == "127.0.0.1" else refusal_reason(ip)
    )
    before = len(server.seen.paths)
    url = server.url(f"/redirect?to={target}", host="public.test")

    with pytest.raises(InputInvalid, match=r"refusing to fetch|only https"):
        fetch_https(url, Settings(fetch_timeout_s=5), cafile=server.cafile)
    assert server.seen.paths[before:] == [f"/redirect?to={target}"]


def test_messages_leave_out_query_tokens(server: HttpsServer, loopback_ok: Settings) -> None:
    with pytest.raises(InputInvalid) as refused:
        fetch_https("https://10.0.0.1/a.jpg?X-Amz-Signature=s3cret", Settings())
    assert "s3cret" not in refused.value.message
    with pytest.raises(InputInvalid) as missing:
        fetch_https(server.url("/gone?token=s3cret"), loopback_ok, cafile=server.cafile)
    assert "s3cret" not in missing.value.message


def test_redirects_are_counted(server: HttpsServer) -> None:
    settings = Settings(fetch_allow_private=True, fetch_max_redirects=2)

    assert fetch_https(server.url("/chain?n=2"), settings, cafile=server.cafile) == BODY
    with pytest.raises(InputInvalid, match="redirects more than 2 times"):
        fetch_https(server.url("/chain?n=3"), settings, cafile=server.cafile)


def test_declared_length_over_the_cap_is_refused_before_reading(server: HttpsServer) -> None:
    settings = Settings(fetch_allow_private=True, max_input_bytes=2**20)

    with pytest.raises(InputTooLarge, match=r"is 32\.0 MiB; the limit is 1\.0 MiB"):
        fetch_https(server.url("/declared-huge"), settings, cafile=server.cafile)


def test_a_long_body_without_length_is_cut_off_at_the_cap(server: HttpsServer) -> None:
    settings = Settings(fetch_allow_private=True, max_input_bytes=2**20)
    streams = len(server.seen.streamed)

    with pytest.raises(InputTooLarge, match=r"over the 1\.0 MiB limit"):
        fetch_https(server.url("/stream-huge"), settings, cafile=server.cafile)
    deadline = time.monotonic() + 5
    while len(server.seen.streamed) == streams and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.seen.streamed[-1] < HUGE  # the fetcher hung up; the server could not finish


@pytest.mark.parametrize("path", ["/drip-body", "/drip-headers"])
def test_a_slow_drip_cannot_outlast_the_fetch_timeout(path: str, server: HttpsServer) -> None:
    settings = Settings(fetch_allow_private=True, fetch_timeout_s=0.8)
    started = time.monotonic()

    with pytest.raises(StorageUnavailable, match="longer than the fetch timeout"):
        fetch_https(server.url(path), settings, cafile=server.cafile)
    assert time.monotonic() - started < 2.5


def test_missing_and_busy_answers(server: HttpsServer, loopback_ok: Settings) -> None:
    with pytest.raises(InputInvalid, match=r"not found: .*HTTP 404"):
        fetch_https(server.url("/nothing-here"), loopback_ok, cafile=server.cafile)
    with pytest.raises(StorageUnavailable, match="HTTP 503"):
        fetch_https(server.url("/busy"), loopback_ok, cafile=server.cafile)


def test_a_closed_port_is_storage_unavailable(loopback_ok: Settings) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(StorageUnavailable, match="cannot fetch"):
        fetch_https(f"https://127.0.0.1:{port}/a.jpg", loopback_ok)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("8.8.8.8", None),
        ("93.184.215.14", None),
        ("2606:4700:4700::1111", None),
        ("127.8.8.8", "loopback"),
        ("172.16.0.1", "private"),
        ("100.127.255.254", "carrier-grade NAT"),
        ("::ffff:10.0.0.1", "private"),
        ("64:ff9b::a00:1", "private"),  # NAT64 spelling of 10.0.0.1
        ("2002:7f00:1::", "loopback"),  # 6to4 spelling of 127.0.0.1
        ("ff02::1", "multicast"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("not-an-ip", "malformed"),
    ],
)
def test_address_policy(address: str, reason: str | None) -> None:
    assert refusal_reason(address) == reason
