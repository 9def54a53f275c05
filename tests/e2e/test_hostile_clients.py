"""Clients that hold connections or send too much, against a real `simgate serve`, over raw
sockets: slow headers and bodies are cut, one address holds only so many connections, an
oversized chunked body is a 413, and a removed device's event stream ends (in every
worker). Event streams themselves are never cut."""

from __future__ import annotations

import select
import socket
import time

import httpx
import pytest

from simgate.serve.guard import Limits, OpenConnections
from simgate.testing import SimgateProcess
from tests.conftest import wait_until

USER, PASSWORD = "hostile-user", "hostile-secret"
CAP = 6  # connections per address in the `serve` below


@pytest.fixture(scope="module")
def serve(tmp_path_factory):
    process = SimgateProcess(["serve"], tmp_path_factory.mktemp("serve"), env={
        "SIMGATE_USERNAME": USER, "SIMGATE_PASSWORD": PASSWORD,
        "SIMGATE_HEADER_TIMEOUT": "1", "SIMGATE_BODY_TIMEOUT": "1",
        "SIMGATE_MAX_CONNECTIONS_PER_ADDRESS": str(CAP)}).start(timeout=90)
    yield process
    process.stop()


def register(process: SimgateProcess) -> dict:
    with httpx.Client(base_url=process.url, auth=(USER, PASSWORD), timeout=30) as client:
        response = client.post("/mobile/v1/device", json={
            "name": "phone", "simCards": [{"slotIndex": 0, "phoneNumber": "+12025550101"}]})
        assert response.status_code == 201, response.text
        return response.json()


def connect(process: SimgateProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", process.port), timeout=60)


def read_until_closed(sock: socket.socket, bound: float = 60) -> bytes:
    """All the server says until it closes; fails if it is still open after `bound` s."""
    received = b""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        readable, _, _ = select.select([sock], [], [], deadline - time.monotonic())
        if not readable:
            break
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk
    raise AssertionError(f"the server kept the connection open; it said {received[:200]!r}")


def trickle(sock: socket.socket, chunk: bytes, bound: float = 60) -> bytes:
    """Send `chunk` every 0.2 s (a slow client, not a wait) until the server closes."""
    received = b""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        readable, _, _ = select.select([sock], [], [], 0.2)
        if readable:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                return received
            if not data:
                return received
            received += data
            continue
        try:
            sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            return received + read_until_closed(sock, 5)
    raise AssertionError(f"the server kept the connection open; it said {received[:200]!r}")


def open_stream(process: SimgateProcess, token: str) -> socket.socket:
    """GET /mobile/v1/events as a device, read up to the stream's first comment."""
    sock = connect(process)
    sock.sendall(f"GET /mobile/v1/events HTTP/1.1\r\nHost: simgate\r\n"
                 f"Authorization: Bearer {token}\r\n\r\n".encode())
    head = b""
    while b": connected" not in head:
        chunk = sock.recv(4096)
        assert chunk, f"stream refused: {head!r}"
        head += chunk
    assert head.startswith(b"HTTP/1.1 200"), head
    return sock


def stream_ended(sock: socket.socket, bound: float = 60) -> bytes:
    """What the stream said until it ended (the last chunk, or the connection closed)."""
    received = b""
    deadline = time.monotonic() + bound
    while not received.endswith(b"0\r\n\r\n") and time.monotonic() < deadline:
        readable, _, _ = select.select([sock], [], [], deadline - time.monotonic())
        if not readable:
            break
        chunk = sock.recv(65536)
        if not chunk:
            return received
        received += chunk
    assert received.endswith(b"0\r\n\r\n"), f"the stream is still open: {received[-200:]!r}"
    return received


def test_trickled_headers_are_cut_but_an_event_stream_is_not(serve):
    device = register(serve)
    stream = open_stream(serve, device["token"])
    slow = connect(serve)
    slow.sendall(b"POST /3rdparty/v1/messages HTTP/1.1\r\nHost: simgate\r\n")
    answer = trickle(slow, b"X-Slow: 1\r\n")
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"headers not received" in answer
    # The header deadline has passed: the stream is still open and still delivers.
    with httpx.Client(base_url=serve.url, auth=(USER, PASSWORD), timeout=30) as client:
        sent = client.post("/3rdparty/v1/messages",
                           json={"message": "still there?", "phoneNumbers": ["+19162255887"]})
        assert sent.status_code == 202, sent.text
    received = b""
    while b"MessageEnqueued" not in received:
        chunk = stream.recv(65536)
        assert chunk, "the event stream was closed"
        received += chunk
    stream.close()


def test_a_body_declared_but_not_sent_is_cut(serve):
    auth = httpx.BasicAuth(USER, PASSWORD)._auth_header.encode()
    head = (b"POST /3rdparty/v1/messages HTTP/1.1\r\nHost: simgate\r\nAuthorization: "
            + auth + b"\r\nContent-Type: application/json\r\nContent-Length: 500000\r\n\r\n")
    slow = connect(serve)
    slow.sendall(head + b'{"message"')
    answer = read_until_closed(slow)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"body not received in time" in answer
    trickled = connect(serve)
    trickled.sendall(head)
    assert trickle(trickled, b" ").startswith(b"HTTP/1.1 408")
    answered = connect(serve)  # refused at once (no credentials), the body never comes
    answered.sendall(head.replace(b"Authorization", b"X-Not-Authorization"))
    assert read_until_closed(answered).startswith(b"HTTP/1.1 401")


def test_a_chunked_body_over_the_limit_is_a_413_on_the_device_api(serve):
    device = register(serve)
    sock = connect(serve)
    sock.sendall(f"POST /mobile/v1/inbox HTTP/1.1\r\nHost: simgate\r\n"
                 f"Authorization: Bearer {device['token']}\r\nContent-Type: application/json\r\n"
                 f"Transfer-Encoding: chunked\r\n\r\n".encode())
    piece = b"[" + b" " * 65534 + b"\n"
    answer = b""
    for _ in range(160):  # 10 MB, unless the server answers first
        if select.select([sock], [], [], 0)[0]:
            break
        try:
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        except (BrokenPipeError, ConnectionResetError):
            break
    answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b"request body too large" in answer


def test_one_address_holds_at_most_the_cap_of_connections(serve):
    device = register(serve)

    def opened() -> socket.socket | None:
        try:
            return open_stream(serve, device["token"])
        except AssertionError:  # a connection of an earlier test not yet gone
            return None

    async def open_all() -> list[socket.socket]:
        streams = []
        for _ in range(CAP):
            streams.append(await wait_until(opened, timeout=30))
        return streams

    import asyncio
    streams = asyncio.run(open_all())
    refused = connect(serve)
    refused.sendall(b"GET /health/live HTTP/1.1\r\nHost: simgate\r\n\r\n")
    answer = read_until_closed(refused)
    assert answer.startswith(b"HTTP/1.1 503"), answer
    assert f"at most {CAP} at once".encode() in answer
    streams.pop().close()  # one goes: another may come

    def health() -> bool:
        try:
            return httpx.get(f"{serve.url}/health/live", timeout=30).status_code == 200
        except httpx.HTTPError:
            return False

    asyncio.run(wait_until(health, timeout=30))
    for stream in streams:
        stream.close()


def test_a_removed_device_loses_its_event_streams_in_every_worker(tmp_path):
    """Eight streams over two workers: the kernel spreads connections between them, so the
    removal (answered by one worker) must reach streams held by the other one too."""
    process = SimgateProcess(["serve", "--workers", "2"], tmp_path / "workers", env={
        "SIMGATE_USERNAME": USER, "SIMGATE_PASSWORD": PASSWORD}).start(timeout=90)
    try:
        device = register(process)
        streams = [open_stream(process, device["token"]) for _ in range(8)]
        with httpx.Client(base_url=process.url, auth=(USER, PASSWORD), timeout=30) as client:
            assert client.delete(f"/3rdparty/v1/devices/{device['id']}").status_code == 204
        for stream in streams:
            stream_ended(stream)
            stream.close()
        again = connect(process)
        again.sendall(f"GET /mobile/v1/events HTTP/1.1\r\nHost: simgate\r\nConnection: close"
                      f"\r\nAuthorization: Bearer {device['token']}\r\n\r\n".encode())
        assert read_until_closed(again).startswith(b"HTTP/1.1 401")
    finally:
        process.stop()


def test_the_connection_cap_counts_an_ipv6_64_as_one_client():
    """A subscriber gets a /64 (or more) and may connect from any address in it: one
    client, one cap. Another /64, an IPv4 address (also written IPv4-mapped) and the
    exempted proxies count apart."""
    connections = OpenConnections(Limits(1, 1, per_address=2, exempt="2001:db8:ff::/48"))
    keys = [connections.open(f"2001:db8:1:2::{n:x}") for n in (1, 0xbeef)]
    assert keys == [("2001:db8:1:2::/64", True)] * 2
    assert connections.open("2001:db8:1:2:ffff:ffff:ffff:ffff") == ("2001:db8:1:2::/64", False)
    assert connections.open("2001:db8:1:3::1") == ("2001:db8:1:3::/64", True)
    assert connections.open("192.0.2.7")[1] and connections.open("::ffff:192.0.2.7")[1]
    assert connections.open("192.0.2.7") == ("192.0.2.7", False)
    assert all(connections.open("2001:db8:ff::1") == (None, True) for _ in range(5))
    connections.close("2001:db8:1:2::/64")  # one goes: another may come
    assert connections.open("2001:db8:1:2::99") == ("2001:db8:1:2::/64", True)
