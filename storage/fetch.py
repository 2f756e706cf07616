"""Fetch an https:// input without letting a URL reach inside our network (SSRF).

For each hop: resolve the host ourselves, refuse the URL if ANY address it resolves to
is loopback, private, CGNAT, unique-local, link-local, multicast, unspecified, reserved
or a cloud metadata address, then connect to a vetted address (never resolving the
name again, which defeats DNS rebinding) with the host name as TLS SNI, certificate
name and Host header. Redirects are followed by hand, re-vetting each target; proxies
in the environment are ignored on purpose; the whole fetch shares one deadline and
the body is read with a byte cap.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

from jobs.errors import InputInvalid, InputTooLarge, StorageUnavailable
from storage.addresses import refusal_reason
from storage.base import ObjectNotFound
from storage.local import describe_size

if TYPE_CHECKING:
    from jobs.settings import Settings

REDIRECTS = {301, 302, 303, 307, 308}
CHUNK = 64 * 1024
USER_AGENT = "darkroom-fetch/1"


@dataclass(frozen=True)
class Target:
    """One https URL, split into what a request needs."""

    url: str
    host: str  # IDNA-encoded name or IP literal, without brackets
    port: int
    path: str  # path and query, as sent on the request line

    @property
    def shown(self) -> str:
        """The URL for messages and logs: without its query, which may hold a token."""
        return shown(self.url)


def shown(url: str) -> str:
    return url.partition("?")[0].partition("#")[0]


def fetch_https(url: str, settings: Settings, *, cafile: Path | None = None) -> bytes:
    """The body of `url`, fetched under the rules above.

    `cafile` is for tests only: it makes that one CA (a test server's self-signed
    certificate) the only one trusted. Certificates are verified either way; no
    setting, job field or `read_uri` call can turn verification off or pass a CA.
    """
    context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    deadline = time.monotonic() + settings.fetch_timeout_s
    current = url
    for _hop in range(settings.fetch_max_redirects + 1):
        target = parse_target(current)
        addresses = vetted_addresses(target, settings)
        conn, response = _request(target, addresses, context, deadline)
        try:
            if response.status not in REDIRECTS:
                _check_status(target, response)
                return _read_capped(target, response, conn, settings.max_input_bytes, deadline)
            current = _redirect_location(target, response)
        finally:
            response.close()
            conn.release()
    raise InputInvalid(
        f"{shown(url)} redirects more than {settings.fetch_max_redirects} times; give the final URL"
    )


def parse_target(url: str) -> Target:
    """Split an https URL; other schemes, credentials and bad ports are refused."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "https":
        raise InputInvalid(f"only https:// inputs are fetched, not {parts.scheme or 'no'}://")
    if parts.username is not None or parts.password is not None:
        raise InputInvalid(f"credentials in input URLs are refused: {parts.hostname}")
    try:
        port = parts.port or 443
    except ValueError:
        raise InputInvalid(f"{shown(url)!r} has an invalid port") from None
    if not parts.hostname:
        raise InputInvalid(f"{shown(url)!r} names no host")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(url=url, host=_ascii_host(parts.hostname), port=port, path=path)


def _ascii_host(host: str) -> str:
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        raise InputInvalid(f"host name {host!r} is not a valid domain name") from None


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, in the resolver's order (once per hop)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", -5)):
            raise InputInvalid(f"host {host} does not exist (DNS: {exc.strerror})") from None
        raise StorageUnavailable(f"cannot resolve {host}: {exc.strerror}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def vetted_addresses(target: Target, settings: Settings) -> list[str]:
    """The target's addresses, all of them public (unless `fetch_allow_private`)."""
    addresses = resolve(target.host, target.port)
    if not addresses:
        raise InputInvalid(f"host {target.host} resolves to no address")
    if settings.fetch_allow_private:
        return addresses
    for address in addresses:
        reason = refusal_reason(address)
        if reason is not None:
            raise InputInvalid(
                f"refusing to fetch {target.shown}: {target.host} resolves to {address}, "
                f"a {reason} address"
            )
    return addresses


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """An HTTPS connection to an address chosen beforehand, verified as `host`.

    A watchdog shuts the socket down at `deadline`, so neither a slow drip of headers
    nor of body bytes can stretch a fetch past the fetch timeout.
    """

    def __init__(
        self, host: str, port: int, address: str, context: ssl.SSLContext, deadline: float
    ) -> None:
        left = deadline - time.monotonic()
        super().__init__(host, port, timeout=max(left, 0.001), context=context)
        self.address = address
        self.expired = False
        self._tls = context
        self._pinned: socket.socket | None = None
        self._watchdog = threading.Timer(max(left, 0.0), self._expire)
        self._watchdog.daemon = True

    def connect(self) -> None:
        family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect((self.address, self.port))  # an IP literal: no DNS here
            self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
        self._pinned = self.sock  # http.client drops self.sock once the response owns it
        self._watchdog.start()

    def release(self) -> None:
        """Close and stop the watchdog. Not `close()`: http.client calls that itself
        once a response owns the socket, while the body is still to be read."""
        self._watchdog.cancel()
        self.close()

    def _expire(self) -> None:
        self.expired = True
        if self._pinned is None:
            return
        # The plain socket's shutdown: wakes a reader blocked inside TLS.
        with contextlib.suppress(OSError):
            socket.socket.shutdown(self._pinned, socket.SHUT_RDWR)


def _request(
    target: Target, addresses: list[str], context: ssl.SSLContext, deadline: float
) -> tuple[PinnedHTTPSConnection, http.client.HTTPResponse]:
    """GET the target from the first vetted address that answers."""
    failure = "no address answered"
    for address in addresses:
        _check_time(target, deadline)
        conn = PinnedHTTPSConnection(target.host, target.port, address, context, deadline)
        try:
            conn.request("GET", target.path, headers={"User-Agent": USER_AGENT, "Accept": "*/*"})
            return conn, conn.getresponse()
        except ssl.SSLCertVerificationError as exc:
            conn.release()
            raise InputInvalid(
                f"TLS certificate of {target.host} does not verify: {exc.verify_message}"
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            conn.release()
            _check_time(target, deadline, conn)
            failure = f"{address}: {getattr(exc, 'strerror', None) or exc}"
    raise StorageUnavailable(f"cannot fetch {target.shown} ({failure})")


def _check_time(target: Target, deadline: float, conn: PinnedHTTPSConnection | None = None) -> None:
    if time.monotonic() >= deadline or (conn is not None and conn.expired):
        raise StorageUnavailable(f"fetching {target.shown} took longer than the fetch timeout")


def _check_status(target: Target, response: http.client.HTTPResponse) -> None:
    status = response.status
    if status in (200, 203):
        return
    if status in (404, 410):
        raise ObjectNotFound(f"not found: {target.shown} (HTTP {status})")
    if status in (408, 429) or status >= 500:
        raise StorageUnavailable(f"{target.host} answered HTTP {status} for {target.shown}")
    raise InputInvalid(f"{target.host} answered HTTP {status} {response.reason} for {target.shown}")


def _redirect_location(target: Target, response: http.client.HTTPResponse) -> str:
    location = response.getheader("Location")
    if not location:
        raise InputInvalid(f"{target.shown} redirects (HTTP {response.status}) but names no target")
    return urljoin(target.url, location.strip()).partition("#")[0]


def _read_capped(
    target: Target,
    response: http.client.HTTPResponse,
    conn: PinnedHTTPSConnection,
    limit: int,
    deadline: float,
) -> bytes:
    """The body, refused as soon as it is known to exceed `limit` bytes."""
    declared = response.getheader("Content-Length")
    if declared and declared.strip().isdigit() and int(declared) > limit:
        raise InputTooLarge(
            f"{target.shown} is {describe_size(int(declared))}; the limit is {describe_size(limit)}"
        )
    chunks: list[bytes] = []
    total = 0
    try:
        while chunk := response.read(CHUNK):
            total += len(chunk)
            if total > limit:
                raise InputTooLarge(f"{target.shown} is over the {describe_size(limit)} limit")
            chunks.append(chunk)
    except (OSError, http.client.HTTPException) as exc:
        _check_time(target, deadline, conn)
        raise StorageUnavailable(f"reading {target.shown} failed: {exc}") from None
    # A watchdog shutdown reads as end of file: never hand back a cut-off body.
    _check_time(target, deadline, conn)
    return b"".join(chunks)
