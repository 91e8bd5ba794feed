"""Fetch an http(s) URL that a client named into a file, without letting the client reach
what only the server can (server-side request forgery).

Every hop is checked before it is contacted: the scheme (http, https), no credentials in
the URL, and every address the host resolves to (no loopback, private, link-local, CGNAT,
multicast, reserved or unspecified address, no cloud metadata endpoint) unless private
addresses are allowed. Redirects are followed here, at most :data:`MAX_REDIRECTS` hops, each
one checked like the first. The body is counted as it arrives and refused past
``max_bytes`` (a larger ``Content-Length`` is refused before reading), and one deadline
covers resolution, connection, redirects and the whole download, so a server that trickles
a byte a second cannot hold a request open for longer than ``timeout_s``.

DNS rebinding: a host could resolve to a public address when checked and a private one when
connected to. The connection is therefore made to the checked address itself: the request
goes to ``http(s)://<checked ip>:<port>/...`` with the original ``Host`` header, and TLS
uses the original host name for SNI and certificate verification (httpcore's
``sni_hostname`` extension). No second lookup happens, so there is no window to rebind.
Proxies from the environment are ignored (``trust_env=False``): a proxy would make the
connection on our behalf to an address we never checked.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx

from soundstage.errors import AppError, ErrorCode

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
AddressPolicy = Callable[[IPAddress], str | None]
"""Says why an address may not be contacted (a short phrase), or None when it may."""

MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
WRITE_CHUNK_BYTES = 1024 * 1024
USER_AGENT = "soundstage-fetch"

_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(address)
    for address in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean... (also link-local: refused twice over)
        "fd00:ec2::254",  # AWS over IPv6
        "192.0.0.192",  # Oracle Cloud's metadata alias (IETF protocol assignments: not flagged by ipaddress)
        "168.63.129.16",  # Azure's WireServer, a public address that answers only inside Azure
        "100.100.100.200",  # Alibaba Cloud (also CGNAT)
    )
)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


@dataclass(frozen=True)
class FetchedFile:
    """A fetched body on disk: ``size`` bytes at ``path``, the server's ``content_type`` (None
    when it sent none) and ``final_url``, the URL after redirects."""

    path: Path
    size: int
    content_type: str | None
    final_url: str


def address_refusal(address: IPAddress) -> str | None:
    """Why a client-named URL may not reach ``address``, or None for a public unicast address.

    IPv6 addresses that lead to an IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``, NAT64
    ``64:ff9b::/96``, 6to4 ``2002::/16``) are judged by that IPv4 address.
    """
    inner = _embedded_ipv4(address)
    if inner is not None:
        reason = address_refusal(inner)
        return None if reason is None else f"{reason} (IPv4 {inner} inside IPv6)"
    if address in _METADATA_ADDRESSES:
        return "the cloud metadata endpoint"
    checks: list[tuple[bool, str]] = [
        (address.is_unspecified, "an unspecified address"),
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (isinstance(address, ipaddress.IPv4Address) and address in _CGNAT, "a shared (CGNAT) address"),
        (address.is_multicast, "a multicast address"),
        (address.is_reserved, "a reserved address"),
        (isinstance(address, ipaddress.IPv6Address) and address.is_site_local, "a site-local address"),
        (address.is_private, "a private address"),
        (not address.is_global, "not a public address"),
    ]
    return next((reason for refused, reason in checks if refused), None)


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv4-mapped, NAT64 or 6to4 address leads to."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def allow_every_address(_: IPAddress) -> str | None:
    """The policy of ALLOW_PRIVATE_URLS: every address may be contacted."""
    return None


def fetch_to_file(
    url: str,
    dest: Path,
    *,
    max_bytes: int,
    timeout_s: float,
    allow_private: bool,
    address_policy: AddressPolicy | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> FetchedFile:
    """Blocking :func:`fetch_to_file_async`, for threads and workers (not inside an event loop)."""
    call = functools.partial(
        fetch_to_file_async,
        url,
        dest,
        max_bytes=max_bytes,
        timeout_s=timeout_s,
        allow_private=allow_private,
        address_policy=address_policy,
        ssl_context=ssl_context,
    )
    return anyio.run(call)


async def fetch_to_file_async(
    url: str,
    dest: Path,
    *,
    max_bytes: int,
    timeout_s: float,
    allow_private: bool,
    address_policy: AddressPolicy | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> FetchedFile:
    """Download ``url`` (http or https) into ``dest`` (created or truncated; removed again on failure).

    Raises :class:`AppError`: 422 ``url_not_allowed`` (scheme, credentials in the URL, or an
    address ``address_policy`` refuses; details name the host, the address and the reason),
    422 ``url_fetch_failed`` (DNS, connection or TLS failure, HTTP status >= 400 with
    ``details.status``, too many redirects), 422 ``url_timeout`` (``timeout_s`` passed; it
    covers everything), 413 ``url_too_large`` (more than ``max_bytes``).

    ``address_policy`` defaults to :func:`address_refusal`, or to allowing everything when
    ``allow_private``; ``ssl_context`` to httpx's default trust (certifi).
    """
    policy = address_policy or (allow_every_address if allow_private else address_refusal)
    hop = _Hop(httpx.URL())
    try:
        with anyio.fail_after(timeout_s):
            return await _fetch(
                url, dest, hop, max_bytes=max_bytes, timeout_s=timeout_s, policy=policy, ssl_context=ssl_context
            )
    except (TimeoutError, httpx.TimeoutException) as error:
        await anyio.Path(dest).unlink(missing_ok=True)
        raise AppError(
            ErrorCode.URL_TIMEOUT,
            f"Fetching the URL from {hop.host} took longer than {timeout_s:g} seconds.",
            status_code=422,
            details={"host": hop.host, "timeout_seconds": timeout_s},
        ) from error
    except httpx.HTTPError as error:
        await anyio.Path(dest).unlink(missing_ok=True)
        raise _fetch_failed(hop.host, f"the transfer failed ({error})", {"host": hop.host}) from error
    except BaseException:
        with anyio.CancelScope(shield=True):
            await anyio.Path(dest).unlink(missing_ok=True)
        raise


@dataclass
class _Hop:
    """The URL being fetched now (the timeout message names its host)."""

    url: httpx.URL

    @property
    def host(self) -> str:
        return self.url.host or "the server"


async def _fetch(
    url: str,
    dest: Path,
    hop: _Hop,
    *,
    max_bytes: int,
    timeout_s: float,
    policy: AddressPolicy,
    ssl_context: ssl.SSLContext | None,
) -> FetchedFile:
    hop.url = _parse(url)
    async with httpx.AsyncClient(
        follow_redirects=False,
        trust_env=False,
        timeout=timeout_s,
        verify=ssl_context if ssl_context is not None else True,
        headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
    ) as client:
        for _ in range(MAX_REDIRECTS + 1):
            async with _open(client, hop.url, policy) as response:
                if response.status_code in REDIRECT_STATUSES:
                    hop.url = _redirect_target(hop.url, response)
                    continue
                _check_status(hop.url, response)
                size = await _download(response, dest, max_bytes, hop.host)
                logger.info("fetched %d bytes from %s", size, hop.host)
                return FetchedFile(
                    path=dest, size=size, content_type=response.headers.get("content-type"), final_url=str(hop.url)
                )
    raise _fetch_failed(
        hop.host, f"more than {MAX_REDIRECTS} redirects", {"host": hop.host, "max_redirects": MAX_REDIRECTS}
    )


def _parse(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as error:
        raise _not_allowed("the URL", "it is not a valid URL") from error
    _check_url(parsed)
    return parsed


def _check_url(url: httpx.URL) -> None:
    host = url.host or "the URL"
    if url.scheme not in ("http", "https"):
        raise _not_allowed(host, f"the scheme {url.scheme or '(none)'!r} is not http or https")
    if url.userinfo:
        raise _not_allowed(host, "URLs with credentials (user:password@) are refused")
    if not url.host:
        raise _not_allowed(host, "it names no host")


def _redirect_target(current: httpx.URL, response: httpx.Response) -> httpx.URL:
    location = response.headers.get("location")
    if not location:
        raise _fetch_failed(
            current.host, f"a {response.status_code} redirect without a Location", {"status": response.status_code}
        )
    try:
        target = current.join(location)
    except httpx.InvalidURL as error:
        raise _not_allowed(current.host, "it redirects to an invalid URL") from error
    _check_url(target)
    return target


def _check_status(url: httpx.URL, response: httpx.Response) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    raise _fetch_failed(url.host, f"the server answered HTTP {status}", {"host": url.host, "status": status})


@contextlib.asynccontextmanager
async def _open(client: httpx.AsyncClient, url: httpx.URL, policy: AddressPolicy) -> AsyncIterator[httpx.Response]:
    """GET ``url`` with its response headers read, connected to an address checked by ``policy``.

    Every address the host resolves to must pass (a name that mixes public and private
    addresses is refused); they are then tried in the resolver's order until one connects.
    """
    host = url.raw_host.decode("ascii")
    addresses = await _resolve(host, url.port or (443 if url.scheme == "https" else 80))
    for address in addresses:
        reason = policy(address)
        if reason is not None:
            raise _not_allowed(url.host, f"it resolves to {address}, {reason}", address)
    error: httpx.TransportError | None = None
    for address in addresses:
        request = client.build_request(
            "GET",
            url.copy_with(host=str(address)),
            headers={"Host": url.netloc.decode("ascii")},
            extensions={"sni_hostname": host},
        )
        try:
            response = await client.send(request, stream=True)
        except httpx.ConnectError as connect_error:
            error = connect_error
            continue
        try:
            yield response
        finally:
            await response.aclose()
        return
    raise _fetch_failed(url.host, f"could not connect ({error})", {"host": url.host}) from error


async def _resolve(host: str, port: int) -> list[IPAddress]:
    """The addresses ``host`` resolves to, in the resolver's order. The lookup runs in a
    thread that is abandoned, not waited for, when the deadline passes."""
    lookup = functools.partial(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    try:
        infos = await anyio.to_thread.run_sync(lookup, abandon_on_cancel=True)
    except (OSError, UnicodeError) as error:
        raise _fetch_failed(host, f"the host name does not resolve ({error})", {"host": host}) from error
    addresses: dict[IPAddress, None] = {}
    for info in infos:
        # A scoped IPv6 address ("fe80::1%eth0") is judged without its scope.
        addresses[ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])] = None
    if not addresses:
        raise _fetch_failed(host, "the host name resolves to no address", {"host": host})
    return list(addresses)


async def _download(response: httpx.Response, dest: Path, max_bytes: int, host: str) -> int:
    declared = response.headers.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(host, max_bytes, int(declared))
    size = 0
    pending = bytearray()
    async with await anyio.open_file(dest, "wb") as sink:
        # Raw bytes: we asked for no content coding, and never inflate what a server compressed
        # anyway (a small gzip bomb would pass the size cap and then fill the disk).
        async for chunk in response.aiter_raw():
            size += len(chunk)
            if size > max_bytes:
                raise _too_large(host, max_bytes)
            pending += chunk
            if len(pending) >= WRITE_CHUNK_BYTES:
                await sink.write(bytes(pending))
                pending.clear()
        await sink.write(bytes(pending))
    return size


def _not_allowed(host: str, reason: str, address: IPAddress | None = None) -> AppError:
    details: dict[str, Any] = {"host": host, "reason": reason}
    if address is not None:
        details["address"] = str(address)
    return AppError(
        ErrorCode.URL_NOT_ALLOWED, f"This URL may not be fetched: {host}: {reason}.", status_code=422, details=details
    )


def _fetch_failed(host: str, reason: str, details: dict[str, Any]) -> AppError:
    return AppError(
        ErrorCode.URL_FETCH_FAILED,
        f"Could not fetch the URL from {host}: {reason}.",
        status_code=422,
        details={"host": host, "reason": reason, **details},
    )


def _too_large(host: str, max_bytes: int, declared: int | None = None) -> AppError:
    details: dict[str, Any] = {"host": host, "max_bytes": max_bytes}
    if declared is not None:
        details["content_length"] = declared
    return AppError(
        ErrorCode.URL_TOO_LARGE,
        f"The file at {host} is larger than {max_bytes / (1024 * 1024):g} MiB (MAX_UPLOAD_MB).",
        status_code=413,
        details=details,
    )
