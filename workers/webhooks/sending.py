"""One POST to a webhook URL from a vetted address, never following a redirect.

Addresses are vetted as `storage.fetch` vets inputs (only public ones, unless
`settings.fetch_allow_private`, which tests use, and which alone allows plain http),
and the connection goes to the vetted address, so DNS cannot be rebound between the
check and the request.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from storage.fetch import PinnedHTTPSConnection, Target, parse_target, vetted_addresses

if TYPE_CHECKING:
    from jobs.settings import Settings

RESPONSE_READ_CAP = 64 * 1024


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Plain http to a vetted address (only with `fetch_allow_private`: tests, dev)."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), timeout=self.timeout)

    def release(self) -> None:
        self.close()


def webhook_target(url: str, settings: Settings) -> Target:
    """The URL split for sending; refuses what `storage.fetch` refuses (plain http too,
    unless private addresses are allowed)."""
    parts = urlsplit(url)
    if parts.scheme == "http" and settings.fetch_allow_private and parts.hostname:
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return Target(url=url, host=parts.hostname, port=parts.port or 80, path=path)
    return parse_target(url)


def post(url: str, body: bytes, headers: dict[str, str], settings: Settings, timeout: float) -> int:
    """POST `body` to `url` from a vetted address; the response status. Raises
    `InputInvalid` (refused URL), `OSError` / `HTTPException` (network)."""
    target = webhook_target(url, settings)
    addresses = vetted_addresses(target, settings)
    deadline = time.monotonic() + timeout
    failure: Exception = ConnectionError(f"no address of {target.host} answered")
    for address in addresses:
        if target.url.startswith("https"):
            context = ssl.create_default_context()
            conn: Any = PinnedHTTPSConnection(target.host, target.port, address, context, deadline)
        else:
            conn = _PinnedHTTPConnection(target.host, target.port, address, timeout)
        try:
            conn.request("POST", target.path, body=body, headers=headers)
            response = conn.getresponse()
            response.read(RESPONSE_READ_CAP)
            return int(response.status)
        except (OSError, http.client.HTTPException) as exc:
            failure = exc
        finally:
            conn.release()
    raise failure
