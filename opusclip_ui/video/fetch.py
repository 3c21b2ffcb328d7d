"""URL ingest: http(s) only, public addresses only, size-capped, timed, retried, all-or-nothing.

The private-address guard runs on the *resolved* addresses of every hop: the first URL and each
redirect target are resolved, every address must be public, and the socket then connects to exactly
the address that was checked (no second DNS lookup an attacker could answer differently). Proxy
settings from the environment are ignored on purpose: a proxy would hide where we connect.

Loopback is reachable only with the test-only setting ``allow_private_urls=True``; private,
link-local (cloud metadata), multicast and reserved addresses never are.
"""
from __future__ import annotations

import http.client
import ipaddress
import re
import socket
import ssl
import time
import urllib.parse
from pathlib import Path
from typing import Callable

from .. import notify
from ..errors import (FileTooLargeError, InvalidRequestError, NetworkError,
                      OperationTimeoutError)
from ..guards import network_operation_safe
from ..log import setup_logging
from ..safe_io import atomic_output, check_free_space
from ..settings import Settings

__all__ = ["check_url", "resolve_checked", "download", "MAX_REDIRECTS", "is_url"]

_log = setup_logging("video.fetch")

MAX_REDIRECTS = 5
CHUNK = 256 * 1024
USER_AGENT = "Video-OpusClip/0.1 (+inspect)"


def is_url(text: str) -> bool:
    return bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", text.strip()))


def check_url(url: str) -> urllib.parse.SplitResult:
    """Refuse anything but a well-formed http(s) URL with a host."""
    url = url.strip()
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidRequestError(
            f"Only http:// and https:// links can be fetched, not {parts.scheme or 'this'}:// links.",
            "Paste a direct http(s) link to a video file, or upload the file instead.")
    if not parts.hostname:
        raise InvalidRequestError(f"The link {url[:100]!r} has no host name.",
                                  "Paste a full link such as https://example.com/video.mp4.")
    try:
        parts.port
    except ValueError as exc:
        raise InvalidRequestError(f"The link has an invalid port: {exc}.") from exc
    return parts


def _address_allowed(ip: ipaddress._BaseAddress, allow_loopback: bool) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return allow_loopback
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_link_local
                                 or ip.is_private or ip.is_unspecified)


def resolve_checked(host: str, port: int, allow_loopback: bool = False) -> str:
    """Resolve ``host`` and return one address to connect to; every address must be allowed."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise NetworkError(f"The host name {host!r} could not be resolved.",
                           "Check the link for typos and the machine's internet connection.",
                           details=str(exc)) from exc
    addresses = []
    for info in infos:
        raw = info[4][0].split("%", 1)[0]
        ip = ipaddress.ip_address(raw)
        if not _address_allowed(ip, allow_loopback):
            raise InvalidRequestError(
                f"The link points at a private or local network address ({ip}), which is not "
                "allowed.", "Use a public link to the video, or upload the file instead.")
        addresses.append(raw)
    if not addresses:
        raise NetworkError(f"The host name {host!r} has no address.")
    return addresses[0]


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def _safe_name(parts: urllib.parse.SplitResult) -> str:
    name = Path(urllib.parse.unquote(parts.path)).name
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:80]
    return name or "download"


def _open(url: str, settings: Settings, timeout: float):
    """Follow redirects by hand, checking every hop. Returns (connection, response, final parts)."""
    allow = settings.allow_private_urls
    for _hop in range(MAX_REDIRECTS + 1):
        parts = check_url(url)
        https = parts.scheme.lower() == "https"
        port = parts.port or (443 if https else 80)
        address = resolve_checked(parts.hostname, port, allow_loopback=allow)
        cls = _PinnedHTTPS if https else _PinnedHTTP
        conn = cls(parts.hostname, port, address, timeout)
        target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
        try:
            conn.request("GET", target, headers={"User-Agent": USER_AGENT,
                                                 "Accept-Encoding": "identity"})
            resp = conn.getresponse()
        except BaseException:
            conn.close()
            raise
        if resp.status in (301, 302, 303, 307, 308):
            location = resp.getheader("Location")
            conn.close()
            if not location:
                raise NetworkError(f"The server redirected without saying where (HTTP "
                                   f"{resp.status}).", status=resp.status)
            url = urllib.parse.urljoin(url, location)
            _log.info("redirect %s -> %s", parts.geturl()[:200], url[:200])
            continue
        if resp.status >= 400:
            conn.close()
            raise NetworkError(f"The server answered HTTP {resp.status} ({resp.reason}).",
                               "Check that the link works in a browser." if resp.status < 500
                               else None, status=resp.status)
        return conn, resp, parts
    raise NetworkError(f"The link redirected more than {MAX_REDIRECTS} times.",
                       "Use the final, direct link to the video file.", status=310)


def _download_once(url: str, dest_dir: Path, settings: Settings, total_timeout: float,
                   timeout: float) -> Path:
    cap = settings.url_max_mb * 2**20
    deadline = time.monotonic() + total_timeout
    conn, resp, parts = _open(url, settings, timeout)
    try:
        length = resp.getheader("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        if expected is not None and expected > cap:
            raise FileTooLargeError(
                f"The linked file is {expected / 2**20:,.0f} MB, over the {settings.url_max_mb} MB "
                "limit for links.", "Download it yourself and trim it, or raise url_max_mb.")
        check_free_space(dest_dir, expected or CHUNK)
        final = dest_dir / _safe_name(parts)
        got = 0
        with atomic_output(final) as tmp, open(tmp, "wb") as fh:
            while True:
                notify.check_cancel()
                if time.monotonic() > deadline:
                    raise OperationTimeoutError(
                        f"The download did not finish within {total_timeout:g} s.",
                        "The server is too slow; try again later or upload the file instead.")
                try:
                    chunk = resp.read1(CHUNK) if hasattr(resp, "read1") else resp.read(CHUNK)
                except http.client.IncompleteRead as exc:
                    raise NetworkError("The download ended early (the connection was cut).") \
                        from exc
                except socket.timeout as exc:
                    raise OperationTimeoutError(
                        f"The server sent nothing for {timeout:g} s.",
                        "Try again later or upload the file instead.") from exc
                if not chunk:
                    break
                got += len(chunk)
                if got > cap:
                    raise FileTooLargeError(
                        f"The linked file is larger than the {settings.url_max_mb} MB limit for "
                        "links; the download was stopped and nothing was kept.",
                        "Download it yourself and trim it, or raise url_max_mb.")
                fh.write(chunk)
                if expected:
                    notify.progress(got / expected, "downloading")
            if expected is not None and got != expected:
                raise NetworkError(f"The download ended early: {got:,} of {expected:,} bytes "
                                   "arrived, so it was thrown away.")
            if got == 0:
                raise InvalidRequestError("The link returned an empty file.",
                                          "Check that it points at the video itself.")
        return final
    finally:
        conn.close()


def download(url: str, dest_dir: str | Path, settings: Settings, *, max_retries: int = 3,
             total_timeout: float | None = None,
             sleep: Callable[[float], None] = time.sleep) -> Path:
    """Download ``url`` into ``dest_dir``; the file appears only when complete.

    Transient failures (connection errors, HTTP 5xx, timeouts) are retried with backoff. Each hop is
    checked against the private-address guard.

    Raises:
        InvalidRequestError: not http(s), or a private/local address (also after a redirect).
        FileTooLargeError: over ``url_max_mb`` (announced or while streaming).
        NetworkError, OperationTimeoutError: after the retries.
    """
    check_url(url)
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    total = total_timeout if total_timeout is not None else settings.url_timeout_s * 20
    once = network_operation_safe(max_retries=max_retries, timeout=settings.url_timeout_s,
                                  sleep=sleep)(_download_once)
    return once(url, dest, settings, total)
