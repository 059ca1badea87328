"""permessage-deflate (CONTRACT 16, RFC 7692): negotiated or not, each of the RFC's
parameters against the caps, a 1 MB compressible message byte for byte with few bytes
on the wire, echo through compression byte for byte around the threshold, and a
decompression bomb closed 1009 with the server's memory flat. python3-websockets is the
real client (it offers permessage-deflate by default); RawWs and a raw socket say what
real clients will not (a chosen offer, a bomb)."""

import asyncio
import os
import random
import socket
import struct
import zlib

import websockets
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

from conftest import HOST, RawWs, rss_kib, run_async, scrape, wait_metric

COMPRESSION = ("server.compression=true",)


def negotiated(port, offer):
    """The server's Sec-WebSocket-Extensions for an upgrade offering `offer` ("" = none)."""
    headers = [("Sec-WebSocket-Extensions", offer)] if offer else []
    ws = RawWs(port, extra_headers=headers)
    try:
        return ws.headers.get("sec-websocket-extensions", "")
    finally:
        ws.sock.close()


def params(answer):
    """{"permessage-deflate": None, "server_no_context_takeover": None, ...}"""
    out = {}
    for part in answer.split(";"):
        key, _, value = part.strip().partition("=")
        if key:
            out[key] = value or None
    return out


def test_negotiated_when_offered_and_on_and_not_otherwise(server_factory):
    on = server_factory(*COMPRESSION)
    assert params(negotiated(on.port, "permessage-deflate")) == {
        "permessage-deflate": None, "server_no_context_takeover": None}
    assert negotiated(on.port, "") == ""  # nothing offered, nothing answered
    assert negotiated(on.port, "x-webkit-deflate-frame") == ""  # only RFC 7692's
    off = server_factory()
    assert negotiated(off.port, "permessage-deflate; client_max_window_bits") == ""

    async def main(port):
        async with websockets.connect(f"ws://{HOST}:{port}/ws", ping_interval=None) as ws:
            await ws.send("hello " * 100)
            return ws.response_headers.get("Sec-WebSocket-Extensions"), await ws.recv()

    answer, echo = run_async(main(on.port))
    assert "permessage-deflate" in answer and echo == "hello " * 100
    answer, echo = run_async(main(off.port))
    assert answer is None and echo == "hello " * 100


def test_each_rfc_7692_parameter_within_the_caps(server_factory):
    srv = server_factory(*COMPRESSION)
    # server_max_window_bits: the client's limit on the server's window is kept.
    assert params(negotiated(srv.port, "permessage-deflate; server_max_window_bits=10")) == {
        "permessage-deflate": None, "server_no_context_takeover": None,
        "server_max_window_bits": "10"}
    # client_max_window_bits without a value: the client may be limited; at the default
    # cap (15) it is not.
    assert params(negotiated(srv.port, "permessage-deflate; client_max_window_bits")) == {
        "permessage-deflate": None, "server_no_context_takeover": None}
    # client_max_window_bits=12: honoured.
    assert params(negotiated(srv.port, "permessage-deflate; client_max_window_bits=12")) == {
        "permessage-deflate": None, "server_no_context_takeover": None,
        "client_max_window_bits": "12"}
    # client_no_context_takeover: accepted; server_no_context_takeover: always.
    assert params(negotiated(srv.port, "permessage-deflate; client_no_context_takeover; "
                                       "server_no_context_takeover")) == {
        "permessage-deflate": None, "server_no_context_takeover": None,
        "client_no_context_takeover": None}
    # The first acceptable offer of several wins.
    assert params(negotiated(srv.port, "permessage-deflate; server_max_window_bits=9, "
                                       "permessage-deflate")) == {
        "permessage-deflate": None, "server_no_context_takeover": None,
        "server_max_window_bits": "9"}

    capped = server_factory(*COMPRESSION, "server.compression_window_bits=10")
    # The cap limits both windows; a client that cannot be told client_max_window_bits
    # gets no compression at all (its window would exceed the cap).
    assert params(negotiated(capped.port, "permessage-deflate; client_max_window_bits")) == {
        "permessage-deflate": None, "server_no_context_takeover": None,
        "server_max_window_bits": "10", "client_max_window_bits": "10"}
    assert negotiated(capped.port, "permessage-deflate") == ""

    # Messages flow under each of these (python3-websockets honours what was agreed).
    async def main(port, **factory):
        extensions = [ClientPerMessageDeflateFactory(**factory)]
        async with websockets.connect(f"ws://{HOST}:{port}/ws", extensions=extensions,
                                      ping_interval=None) as ws:
            text = "".join(random.choice("abc ") for _ in range(20000))
            await ws.send(text)
            return await ws.recv() == text

    assert run_async(main(srv.port, server_max_window_bits=9, client_max_window_bits=True))
    assert run_async(main(srv.port, client_no_context_takeover=True))
    assert run_async(main(capped.port, client_max_window_bits=True))


def test_a_1_mb_compressible_message_round_trips_with_few_bytes_on_the_wire(server_factory):
    srv = server_factory(*COMPRESSION, "server.max_message_bytes=2000000")
    message = ('{"user":"alice","event":"tick","values":[1,2,3,4,5,6,7,8]}' * 17000)[:1000000]

    async def main():
        async with websockets.connect(f"ws://{HOST}:{srv.port}/ws", max_size=None,
                                      ping_interval=None) as ws:
            await ws.send(message)
            return await asyncio.wait_for(ws.recv(), 20)

    assert run_async(main(), timeout=60) == message
    m = scrape(srv.port)
    # wsvisor_bytes_sent_total is the payload as written: compressed, here.
    assert m.get("wsvisor_bytes_sent_total") < len(message) / 50, m.get("wsvisor_bytes_sent_total")
    assert m.get("wsvisor_bytes_received_total") == len(message)  # as inflated


def test_echo_through_compression_byte_for_byte(server_factory):
    srv = server_factory(*COMPRESSION, "server.compression_threshold=256",
                         "server.max_message_bytes=200000")
    rng = random.Random(7)
    sizes = [0, 1, 255, 256, 257, 1000, 4096, 30000, 65536]
    messages = []
    for n in sizes:
        messages.append("".join(rng.choice("abcdefgh{}:,\"é") for _ in range(n)))
        messages.append(bytes(rng.getrandbits(8) for _ in range(n)))  # incompressible
        messages.append(b"\x00" * n)

    async def main():
        async with websockets.connect(f"ws://{HOST}:{srv.port}/ws", max_size=None,
                                      ping_interval=None) as ws:
            for m in messages:  # pipelined
                await ws.send(m)
            return [await asyncio.wait_for(ws.recv(), 10) for _ in messages]

    assert run_async(main(), timeout=60) == messages

    # On the wire: RSV1 from the threshold up, never below it.
    ws = RawWs(srv.port, extra_headers=[("Sec-WebSocket-Extensions", "permessage-deflate")])
    try:
        for n in (255, 256):
            ws.send_frame(0x1, b"a" * n)
            _, opcode, payload = ws.read_frame()
            assert opcode == 0x1
            if n < 256:
                assert ws.last_rsv == 0 and payload == b"a" * n
            else:
                assert ws.last_rsv == 0x40, n
                inflater = zlib.decompressobj(-15)
                assert inflater.decompress(payload + b"\x00\x00\xff\xff") == b"a" * n
    finally:
        ws.sock.close()


def masked_frame(first_byte, payload):
    key = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", first_byte, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", first_byte, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", first_byte, 0x80 | 127, n)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + key + masked


def test_a_decompression_bomb_is_closed_1009_with_memory_flat(server_factory):
    srv = server_factory(*COMPRESSION)  # max_message_bytes: 65536
    # The deflate stream of 1 GB of zeros (about 1 MB: deflate's ratio tops out near
    # 1032:1), sent as one fragmented message, RSV1 on its first frame, until the server
    # closes. It never gets far: 64 KiB inflated is about 64 bytes of it.
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = b"\x00" * (1 << 20)
    ws = RawWs(srv.port, extra_headers=[("Sec-WebSocket-Extensions", "permessage-deflate")])
    assert "permessage-deflate" in ws.headers.get("sec-websocket-extensions", "")
    rss_before = rss_kib(srv.pid)
    sent = 0
    first = True
    code = None
    try:
        for _ in range(1024):  # 1 GB of input
            piece = compressor.compress(chunk)
            if not piece:
                continue
            ws.sock.sendall(masked_frame((0x40 | 0x1) if first else 0x0, piece))
            first = False
            sent += len(piece)
            ws.sock.settimeout(0.001)
            try:
                data = ws.sock.recv(65536)
            except (socket.timeout, BlockingIOError):
                continue
            except (ConnectionResetError, BrokenPipeError):
                break
            ws.buf += data
            break
    except (ConnectionResetError, BrokenPipeError):
        pass
    ws.sock.settimeout(5)
    try:
        code, _ = ws.read_close()
    except (ConnectionError, OSError):
        code = None
    finally:
        ws.sock.close()
    print(f"sent {sent} compressed bytes before the close")
    assert code == 1009
    assert sent < 1 << 20, sent  # closed long before the stream was
    m = wait_metric(srv.port, lambda m: m.get("wsvisor_connections") == 0, 5)
    assert m.get("wsvisor_connections_closed_total", reason="protocol_error") == 1
    rss_after = rss_kib(srv.pid)
    # Far below what the bomb would inflate to (1 GB). Under AddressSanitizer the first
    # compressed message's allocations (Beast's inflater, its window) cost several times
    # their size in redzones and shadow (CI's sanitizer pass: +10 MiB).
    bound_kib = (32 if "ASAN_OPTIONS" in os.environ else 8) * 1024
    assert rss_after - rss_before < bound_kib, (rss_before, rss_after)
    # Unharmed: a compressed echo works at once.
    ws = RawWs(srv.port, extra_headers=[("Sec-WebSocket-Extensions", "permessage-deflate")])
    try:
        ws.send_frame(0x1, b"after" * 100)
        assert ws.read_frame()[2] != b""
    finally:
        ws.sock.close()


def test_bad_compressed_input_is_closed_1007_or_1002_and_frees_the_slot(server_factory):
    srv = server_factory(*COMPRESSION)
    cases = [
        # Not a deflate stream at all.
        (0x40 | 0x1, b"\xff\xff\xff\xff garbage"),
        # RSV1 on a control frame (RFC 7692 6.1: only data frames).
        (0x40 | 0x9, b""),
    ]
    for first_byte, payload in cases:
        ws = RawWs(srv.port, extra_headers=[("Sec-WebSocket-Extensions", "permessage-deflate")])
        try:
            ws.sock.sendall(masked_frame(0x80 | first_byte, payload))
            code, _ = ws.read_close()
        finally:
            ws.sock.close()
        assert code in (1002, 1007), (first_byte, code)
    wait_metric(srv.port, lambda m: m.get("wsvisor_connections") == 0, 5)
