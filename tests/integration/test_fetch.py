"""`soundstage.fetch`: the safe URL fetcher, against real HTTP(S) servers on loopback addresses.

A machine running tests has no public address to serve from, so every real fetch here needs
private addresses allowed. Where a test must tell an allowed hop from a refused one (a redirect
into a private network), it uses two loopback addresses: 127.0.0.2 stands in for a public
server (a policy lets it through) and 127.0.0.1 stays refused by the real classifier.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from soundstage.errors import AppError, ErrorCode
from soundstage.fetch import MAX_REDIRECTS, FetchedFile, IPAddress, address_refusal, fetch_to_file
from tests.support.http_server import HttpServer
from tests.support.waiting import wait_until

MIB = 1024 * 1024
STAND_IN_PUBLIC = ipaddress.ip_address("127.0.0.2")


@pytest.fixture
def server() -> Iterator[HttpServer]:
    with HttpServer("127.0.0.1") as server:
        yield server


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "fetched.bin"


def fetch(url: str, dest: Path, **options: object) -> FetchedFile:
    settings: dict[str, object] = {"max_bytes": MIB, "timeout_s": 10.0, "allow_private": True, **options}
    return fetch_to_file(url, dest, **settings)  # type: ignore[arg-type]


def refused(url: str, dest: Path, code: ErrorCode, status: int = 422, **options: object) -> AppError:
    with pytest.raises(AppError) as caught:
        fetch(url, dest, **options)
    assert (caught.value.code, caught.value.status_code) == (code, status), caught.value.message
    assert not dest.exists(), "a refused fetch leaves no file"
    return caught.value


def public_stand_in(address: IPAddress) -> str | None:
    """The real classifier, except that 127.0.0.2 counts as a public server."""
    return None if address == STAND_IN_PUBLIC else address_refusal(address)


# ------------------------------------------------------------- the classifier


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.1.2.3", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "CGNAT"),
        ("100.127.255.254", "CGNAT"),
        ("169.254.169.254", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("192.0.0.192", "metadata"),  # Oracle Cloud: ipaddress calls it neither private nor reserved
        ("168.63.129.16", "metadata"),  # Azure WireServer: a public address
        ("100.100.100.200", "metadata"),  # Alibaba Cloud
        ("169.254.1.1", "link-local"),
        ("fe80::", "link-local"),
        ("fe80::1", "link-local"),
        ("fd00::", "private"),
        ("fd12:3456::1", "private"),
        ("fec0::1", "site-local"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 - an address to classify, not a bind
        ("::", "unspecified"),
        ("0.1.2.3", "private"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("192.0.2.1", "private"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "metadata"),
        ("64:ff9b::a00:1", "private"),
        ("2002:7f00:1::", "loopback"),
        ("93.184.216.34", None),
        ("8.8.8.8", None),
        ("100.128.0.1", None),
        ("172.32.0.1", None),
        ("2606:4700:4700::1111", None),
        ("::ffff:93.184.216.34", None),
        ("64:ff9b::5db8:d822", None),
    ],
)
def test_address_classifier(address: str, reason: str | None) -> None:
    verdict = address_refusal(ipaddress.ip_address(address))
    if reason is None:
        assert verdict is None
    else:
        assert verdict is not None and reason in verdict, verdict


# -------------------------------------------------------- which URLs may go


def test_loopback_is_refused_without_allow_private(server: HttpServer, dest: Path) -> None:
    for url in (server.body("/a", b"audio"), f"http://localhost:{server.port}/a"):
        error = refused(url, dest, ErrorCode.URL_NOT_ALLOWED, allow_private=False)
        assert error.details["address"] == "127.0.0.1"
        assert "loopback" in error.details["reason"] and error.details["host"] in ("127.0.0.1", "localhost")
    assert server.hits["/a"] == 0, "a refused address is never contacted"


def test_allow_private_fetches_and_keeps_the_host_name(server: HttpServer, dest: Path) -> None:
    payload = bytes(range(256)) * 1000
    server.body("/song.wav", payload, content_type="audio/wav")
    url = f"http://localhost:{server.port}/song.wav"
    fetched = fetch(url, dest)
    assert fetched == FetchedFile(path=dest, size=len(payload), content_type="audio/wav", final_url=url)
    assert dest.read_bytes() == payload
    # Connected to the checked address, but the server still sees the name the URL gave.
    assert server.hosts == [f"localhost:{server.port}"]


@pytest.mark.parametrize(
    "url",
    ["ftp://127.0.0.1/a.wav", "file:///etc/passwd", "gopher://127.0.0.1/", "//127.0.0.1/a", "not a url", "http://"],
)
def test_other_schemes_are_refused(url: str, dest: Path) -> None:
    error = refused(url, dest, ErrorCode.URL_NOT_ALLOWED)
    assert error.details["reason"]


def test_credentials_in_the_url_are_refused(server: HttpServer, dest: Path) -> None:
    server.body("/a", b"audio")
    for userinfo in ("user:s3cr3t@", "user@", ":s3cr3t@"):
        error = refused(f"http://{userinfo}127.0.0.1:{server.port}/a", dest, ErrorCode.URL_NOT_ALLOWED)
        assert "credentials" in error.details["reason"]
        assert "s3cr3t" not in error.message and "s3cr3t" not in str(error.details)
    assert server.hits["/a"] == 0


# ------------------------------------------------------------------ redirects


def test_a_redirect_into_a_private_address_is_refused(dest: Path) -> None:
    with HttpServer("127.0.0.2") as public, HttpServer("127.0.0.1") as private:
        target = private.body("/secret", b"internal data")
        public.redirect("/by-address", target)
        public.redirect("/by-name", f"http://localhost:{private.port}/secret", status=307)
        for path in ("/by-address", "/by-name"):
            error = refused(public.url(path), dest, ErrorCode.URL_NOT_ALLOWED, address_policy=public_stand_in)
            assert error.details["address"] == "127.0.0.1" and "loopback" in error.details["reason"]
            assert public.hits[path] == 1
        assert private.hits["/secret"] == 0
        # The control: when the policy lets the second address through, the same chain is followed.
        fetched = fetch(public.url("/by-address"), dest, address_policy=lambda _: None)
        assert (dest.read_bytes(), fetched.final_url) == (b"internal data", target)


def test_every_hop_is_checked_for_scheme_and_credentials(server: HttpServer, dest: Path) -> None:
    server.redirect("/to-file", "file:///etc/passwd")
    server.redirect("/to-ftp", "ftp://127.0.0.1/x")
    server.redirect("/to-userinfo", f"http://u:p@127.0.0.1:{server.port}/a")
    server.redirect("/nowhere", "")
    for path in ("/to-file", "/to-ftp", "/to-userinfo"):
        refused(server.url(path), dest, ErrorCode.URL_NOT_ALLOWED)
    assert server.hits["/a"] == 0
    refused(server.url("/nowhere"), dest, ErrorCode.URL_FETCH_FAILED)


def test_redirects_are_followed_up_to_the_limit(server: HttpServer, dest: Path) -> None:
    server.body("/end", b"the end")
    for hop in range(MAX_REDIRECTS + 1):
        server.redirect(f"/r{hop}", f"/r{hop + 1}" if hop < MAX_REDIRECTS else "/end")  # relative locations
    fetched = fetch(server.url("/r1"), dest)  # 5 redirects
    assert dest.read_bytes() == b"the end" and fetched.final_url == server.url("/end")
    error = refused(server.url("/r0"), dest, ErrorCode.URL_FETCH_FAILED)  # 6 redirects
    assert error.details["max_redirects"] == MAX_REDIRECTS
    assert server.hits["/end"] == 1


# ---------------------------------------------------------------------- size


def test_a_streamed_body_over_the_cap_is_cut_off(server: HttpServer, dest: Path) -> None:
    url = server.stream("/endless", 64 * MIB)
    error = refused(url, dest, ErrorCode.URL_TOO_LARGE, status=413)
    assert error.details["max_bytes"] == MIB and "content_length" not in error.details
    # The client stopped reading: the server could only push the socket buffers' worth past the cap.
    wait_until(lambda: server.disconnects["/endless"] == 1, timeout=5, message="the server notices the hang-up")
    assert server.bytes_sent["/endless"] < 16 * MIB


def test_the_cap_is_inclusive(server: HttpServer, dest: Path) -> None:
    assert fetch(server.body("/exact", b"\1" * MIB), dest).size == MIB
    refused(server.body("/over", b"\1" * (MIB + 1)), dest, ErrorCode.URL_TOO_LARGE, status=413)


def test_a_large_content_length_is_refused_before_downloading(server: HttpServer, dest: Path) -> None:
    url = server.declared("/huge", 10 * 1024 * MIB)
    started = time.monotonic()
    error = refused(url, dest, ErrorCode.URL_TOO_LARGE, status=413, timeout_s=5.0)
    assert time.monotonic() - started < 2.0, "refused from the headers, not after waiting for the body"
    assert error.details["content_length"] == 10 * 1024 * MIB


# ----------------------------------------------------------------- time


@pytest.mark.parametrize("route", ["silent", "trickle"])
def test_a_stalling_server_times_out_within_the_limit(server: HttpServer, dest: Path, route: str) -> None:
    url = server.silent("/slow") if route == "silent" else server.trickle("/slow")
    started = time.monotonic()
    error = refused(url, dest, ErrorCode.URL_TIMEOUT, timeout_s=1.5)
    elapsed = time.monotonic() - started
    assert 1.5 <= elapsed < 2.5, elapsed
    assert error.details == {"host": "127.0.0.1", "timeout_seconds": 1.5}
    if route == "trickle":
        assert server.bytes_sent["/slow"] > 0, "bytes kept arriving; only the whole-download deadline stops it"


# ----------------------------------------------------------------- failures


@pytest.mark.parametrize("status", [404, 410, 500, 503])
def test_an_http_error_status_fails_with_the_status(server: HttpServer, dest: Path, status: int) -> None:
    error = refused(server.status("/x", status), dest, ErrorCode.URL_FETCH_FAILED)
    assert error.details["status"] == status and str(status) in error.message


def test_connection_refused_and_unknown_host_fail(dest: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    refused(f"http://127.0.0.1:{port}/a", dest, ErrorCode.URL_FETCH_FAILED)
    error = refused("http://no-such-host.invalid/a.wav", dest, ErrorCode.URL_FETCH_FAILED)
    assert error.details["host"] == "no-such-host.invalid"


# -------------------------------------------------------------------- HTTPS


def test_https_verifies_the_certificate_against_the_host_name(tmp_path: Path, dest: Path) -> None:
    """The connection goes to the checked IP, yet TLS still checks the certificate against
    the URL's host name (SNI), so pinning neither breaks HTTPS nor weakens it."""
    for name, should_pass in (("localhost", True), ("elsewhere.example", False)):
        cert, key = _self_signed(tmp_path, name)
        trust = ssl.create_default_context(cafile=str(cert))
        with HttpServer("127.0.0.1", tls=(str(cert), str(key)), url_host="localhost") as server:
            url = server.body("/a", b"secure audio")
            if should_pass:
                assert fetch(url, dest, ssl_context=trust).size == len(b"secure audio")
                assert server.hosts == [f"localhost:{server.port}"]
            else:
                error = refused(url, dest, ErrorCode.URL_FETCH_FAILED, ssl_context=trust)
                assert "certificate" in error.message.lower(), error.message
            refused(url, dest, ErrorCode.URL_FETCH_FAILED)  # certifi does not trust the test certificate


# ------------------------------------------------------------------- helpers


def _self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path
