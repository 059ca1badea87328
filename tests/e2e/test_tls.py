"""TLS on the main port (CONTRACT 16): wss:// and https health with python3-websockets
and Python's ssl module against a self-signed certificate that each test makes with the
openssl command; echo, gateway (the example backend) and hub (Centrifugo's SDK in node)
over wss; a SIGHUP reload under 200 open connections; bad files at start and at reload;
TLS 1.2 as the floor; handshakes that never finish are cut by handshake_timeout and give
their place back. Metrics and the server API are read on plain listeners of their own
(admin.listen, api.listen), as an operator would keep them on a private port."""

import asyncio
import http.client
import signal
import socket
import ssl
import subprocess
import time
import warnings

import pytest
import websockets

from admin_helpers import ADMIN_ENV
from conftest import HOST, free_port, run_async, run_cli, scrape, wait_metric, wait_until
from gateway_helpers import GATEWAY_ENV, backend, gateway_sets, session  # noqa: F401
from hub_helpers import WS_PATH, connection_token, hub_api, sdk_clients, start_hub
from test_wsload_smoke import wsload


def make_certificate(directory, name, common_name="127.0.0.1"):
    """A self-signed certificate for 127.0.0.1 and its key: (cert path, key path)."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={common_name}",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60)
    return cert, key


def client_context(cafile, **versions):
    ctx = ssl.create_default_context(cafile=str(cafile))
    for attribute, value in versions.items():
        setattr(ctx, attribute, value)
    return ctx


def https_get(port, path, ctx, timeout=5.0):
    conn = http.client.HTTPSConnection(HOST, port, timeout=timeout, context=ctx)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def peer_certificate(port, ctx):
    """The DER certificate the server shows a new connection."""
    with socket.create_connection((HOST, port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=HOST) as tls:
            return tls.getpeercert(binary_form=True)


def der(cert_path):
    return ssl.PEM_cert_to_DER_cert(cert_path.read_text())


def wait_tls_ready(srv, cert, timeout=15.0):
    """Until `srv` answers /health/ready with 200 over TLS (conftest's wait is plain)."""
    ctx = client_context(cert)

    def ready():
        assert srv.alive(), srv.log()
        try:
            return https_get(srv.port, "/health/ready", ctx, timeout=1.0)[0] == 200
        except OSError:
            return False

    wait_until(ready, timeout, interval=0.05, what="the TLS server to be ready")


class TlsServer:
    """A started wsvisor with TLS on its main port and /metrics on a plain admin port."""

    def __init__(self, server_factory, cert, key, *sets, env=None, ready=True,
                 expected_exit=0, config=None):
        self.admin_port = free_port()
        self.cert = cert
        self.srv = server_factory(
            f"server.tls_cert_file={cert}", f"server.tls_key_file={key}",
            f"admin.listen={HOST}:{self.admin_port}", *sets,
            env={**ADMIN_ENV, **(env or {})}, ready=False, expected_exit=expected_exit,
            config=config)
        self.port = self.srv.port
        if ready:
            self.wait_ready()

    def wait_ready(self, timeout=15.0):
        wait_tls_ready(self.srv, self.cert, timeout)

    def url(self, path="/ws"):
        return f"wss://{HOST}:{self.port}{path}"

    def metrics(self):
        return scrape(self.admin_port)


@pytest.fixture
def certs(tmp_path):
    return make_certificate(tmp_path, "first")


# ------------------------------------------------------------------------ echo, https

def test_echo_over_wss_byte_for_byte_and_https_health(server_factory, certs):
    cert, key = certs
    tls = TlsServer(server_factory, cert, key)
    ctx = client_context(cert)
    assert https_get(tls.port, "/health/live", ctx) == (200, b'{"status":"alive"}')
    payloads = ["hello", "é" * 1000, b"\x00\xff" * 30000, bytes(range(256)) * 200]

    async def main():
        async with websockets.connect(tls.url(), ssl=ctx, max_size=None,
                                      ping_interval=None) as ws:
            got = []
            for p in payloads:
                await ws.send(p)
                got.append(await asyncio.wait_for(ws.recv(), 10))
            # Pipelined: 200 small messages in one go come back in order.
            for i in range(200):
                await ws.send(f"m{i}")
            got.append([await asyncio.wait_for(ws.recv(), 10) for _ in range(200)])
            return got

    got = run_async(main(), timeout=60)
    assert got[:4] == payloads[:2] + [payloads[2], payloads[3]]
    assert got[4] == [f"m{i}" for i in range(200)]
    wait_metric(tls.admin_port, lambda m: m.get("wsvisor_connections") == 0, 5)


def test_the_health_probe_speaks_tls_when_the_server_does(server_factory, certs):
    # `wsvisor --health` (the image's HEALTHCHECK) reads the same configuration.
    cert, key = certs
    tls = TlsServer(server_factory, cert, key)
    sets = [f"server.host={HOST}", f"server.port={tls.port}", f"server.tls_cert_file={cert}",
            f"server.tls_key_file={key}"]
    args = [a for s in sets for a in ("--set", s)]
    r = run_cli("--health", *args)
    assert (r.returncode, r.stdout.strip()) == (0, "alive"), (r.stdout, r.stderr)
    # Without the TLS keys it speaks plain HTTP to a TLS port, and says so.
    r = run_cli("--health", *args[:4])
    assert r.returncode == 1 and "http://" in r.stderr, (r.stdout, r.stderr)


def test_wsload_speaks_wss_byte_for_byte(server_factory, certs):
    # The load tool the TLS benchmark uses (bench/ab_echo.sh TLS=1).
    cert, key = certs
    tls = TlsServer(server_factory, cert, key, "limits.max_per_ip=0")
    text = wsload(tls.port, "echo", "--tls", "on", "--connections", "20", "--in-flight", "8",
                  "--size", "64", "--duration", "2")
    assert (text["mismatches"], text["connections_ok"], text["errors"]) == (0, 20, {}), text
    assert text["messages_received"] > 100, text
    binary = wsload(tls.port, "echo", "--tls", "on", "--connections", "4", "--size", "40000",
                    "--binary", "--in-flight", "2", "--duration", "2")
    assert (binary["mismatches"], binary["errors"]) == (0, {}), binary
    assert binary["messages_received"] > 10, binary


def test_compression_over_tls(server_factory, certs):
    # The two layers together: deflated frames inside TLS records.
    cert, key = certs
    tls = TlsServer(server_factory, cert, key, "server.compression=true",
                    "server.max_message_bytes=300000")
    message = '{"event":"tick","values":[1,2,3,4,5,6,7,8]}' * 5000

    async def main():
        async with websockets.connect(tls.url(), ssl=client_context(cert), max_size=None,
                                      ping_interval=None) as ws:
            await ws.send(message)
            return ws.response_headers.get("Sec-WebSocket-Extensions"), await ws.recv()

    agreed, echo = run_async(main(), timeout=30)
    assert "permessage-deflate" in agreed and echo == message
    assert tls.metrics().get("wsvisor_bytes_sent_total") < len(message) / 20


def test_plain_http_on_the_tls_port_gets_no_answer_and_costs_nothing(server_factory, certs):
    cert, key = certs
    tls = TlsServer(server_factory, cert, key)
    data = b""
    with socket.create_connection((HOST, tls.port), timeout=5) as s:
        s.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            while chunk := s.recv(4096):
                data += chunk
        except ConnectionResetError:
            pass
    assert b"HTTP/1.1" not in data, data
    # The server is unharmed.
    assert https_get(tls.port, "/health/live", client_context(cert))[0] == 200


def test_tls_1_2_is_the_floor(server_factory, certs):
    cert, key = certs
    tls = TlsServer(server_factory, cert, key)
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = client_context(cert, minimum_version=version, maximum_version=version)
        with socket.create_connection((HOST, tls.port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname=HOST) as s:
                assert s.version() == version.name.replace("v1_", "v1.")
    # A client that offers at most TLS 1.1 (allowed on its side at security level 0).
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(str(cert))
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():  # deprecated, which is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    with socket.create_connection((HOST, tls.port), timeout=5) as raw:
        with pytest.raises(ssl.SSLError) as refused:
            old.wrap_socket(raw, server_hostname=HOST)
    assert "VERSION" in str(refused.value).upper(), refused.value


# ------------------------------------------------------------------- bad files

def test_bad_files_at_start_exit_2_naming_the_key(tmp_path, certs):
    cert, key = certs
    _, other_key = make_certificate(tmp_path, "other")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    port = str(free_port())
    cases = [
        ((f"server.tls_cert_file={tmp_path / 'missing.crt'}", f"server.tls_key_file={key}"),
         "server.tls_cert_file"),
        ((f"server.tls_cert_file={garbage}", f"server.tls_key_file={key}"),
         "server.tls_cert_file"),
        ((f"server.tls_cert_file={cert}", f"server.tls_key_file={garbage}"),
         "server.tls_key_file"),
        ((f"server.tls_cert_file={cert}", f"server.tls_key_file={other_key}"),
         "does not belong to the certificate"),
        ((f"server.tls_cert_file={cert}",), "server.tls_key_file"),
        (("admin.tls=true", "admin.listen=127.0.0.1:0"), "admin.tls"),
    ]
    for sets, named in cases:
        args = ["--set", f"server.host={HOST}", "--set", f"server.port={port}"]
        for s in sets:
            args += ["--set", s]
        r = run_cli(*args, timeout=20)
        assert r.returncode == 2, (sets, r.returncode, r.stdout, r.stderr)
        out = r.stdout + r.stderr
        assert named in out, (sets, out)


def test_a_bad_file_at_reload_keeps_the_old_certificate(server_factory, tmp_path, certs):
    cert, key = certs
    # The server reads the files at these paths again on SIGHUP.
    live_cert, live_key = tmp_path / "live.crt", tmp_path / "live.key"
    live_cert.write_bytes(cert.read_bytes())
    live_key.write_bytes(key.read_bytes())
    tls = TlsServer(server_factory, live_cert, live_key)
    ctx = client_context(cert)
    live_cert.write_text("-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n")
    tls.srv.signal(signal.SIGHUP)
    wait_until(lambda: "not reloaded" in tls.srv.log(), 5, what="the failed reload's line")
    line = next(l for l in tls.srv.log().splitlines() if "not reloaded" in l)
    assert "server.tls_cert_file" in line and str(live_cert) in line, line
    assert peer_certificate(tls.port, ctx) == der(cert)
    assert https_get(tls.port, "/health/ready", ctx)[0] == 200


# --------------------------------------------------------------- reload under load

def test_reload_under_200_connections_loses_none(server_factory, tmp_path, certs):
    cert, key = certs
    second_cert, second_key = make_certificate(tmp_path, "second")
    live_cert, live_key = tmp_path / "live.crt", tmp_path / "live.key"
    live_cert.write_bytes(cert.read_bytes())
    live_key.write_bytes(key.read_bytes())
    tls = TlsServer(server_factory, live_cert, live_key, "limits.max_per_ip=0")
    first_ctx = client_context(cert)
    second_ctx = client_context(second_cert)
    count = 200

    async def main():
        conns = [await websockets.connect(tls.url(), ssl=first_ctx, ping_interval=None,
                                          open_timeout=20) for _ in range(count)]
        wait_metric(tls.admin_port, lambda m: m.get("wsvisor_connections") == count, 10)
        live_cert.write_bytes(second_cert.read_bytes())
        live_key.write_bytes(second_key.read_bytes())
        tls.srv.signal(signal.SIGHUP)
        await asyncio.sleep(0)
        wait_until(lambda: "certificate and key reloaded" in tls.srv.log(), 5,
                   what="the reload's line")
        # Every connection made before still echoes, in both directions.
        for i, ws in enumerate(conns):
            await ws.send(f"after reload {i}")
        echoes = [await asyncio.wait_for(ws.recv(), 10) for ws in conns]
        # New connections get the new certificate (and the old one no longer verifies).
        fresh = await websockets.connect(tls.url(), ssl=second_ctx, ping_interval=None)
        await fresh.send("new")
        fresh_echo = await asyncio.wait_for(fresh.recv(), 10)
        await fresh.close()
        for ws in conns:
            await ws.close()
        return echoes, fresh_echo

    echoes, fresh_echo = run_async(main(), timeout=120)
    assert echoes == [f"after reload {i}" for i in range(count)]
    assert fresh_echo == "new"
    assert peer_certificate(tls.port, second_ctx) == der(second_cert)
    with pytest.raises(ssl.SSLCertVerificationError):
        peer_certificate(tls.port, first_ctx)
    m = wait_metric(tls.admin_port, lambda m: m.get("wsvisor_connections") == 0, 10)
    closed = {dict(labels)["reason"]: value
              for labels, value in m.series("wsvisor_connections_closed_total").items() if value}
    assert closed == {"client": count + 1}, closed


# ------------------------------------------------------- handshakes that never finish

def client_hello_start(port):
    """The first bytes of a real ClientHello (a TLS record header and a few more)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=HOST)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    hello = outgoing.read()
    return hello[:len(hello) // 2]


def test_garbage_and_stalled_handshakes_are_cut_and_give_their_place_back(server_factory,
                                                                          certs):
    cert, key = certs
    budget = 10
    tls = TlsServer(server_factory, cert, key, f"limits.max_pending_handshakes={budget}",
                    "server.handshake_timeout=1s")
    ctx = client_context(cert)
    half_hello = client_hello_start(tls.port)

    def refused_so_far():
        return tls.metrics().get("wsvisor_admissions_rejected_total", 0,
                                 reason="handshake_limit")

    for round_number in range(2):
        # Half of the budget stalls before the ClientHello, half in its middle.
        stalled = []
        for i in range(budget):
            s = socket.create_connection((HOST, tls.port), timeout=5)
            if i % 2:
                s.sendall(half_hello)
            stalled.append(s)
        time.sleep(0.3)
        # The budget is full: one more is refused (in the health lane, then closed).
        before = refused_so_far()
        with socket.create_connection((HOST, tls.port), timeout=5) as extra:
            extra.settimeout(3)
            assert extra.recv(1) == b""
        wait_until(lambda: refused_so_far() == before + 1, 5, what="the refusal count")
        # handshake_timeout (1 s) cuts every stalled one; the server closes them.
        started = time.monotonic()
        for s in stalled:
            s.settimeout(5)
            try:
                assert s.recv(1) == b""
            except ConnectionResetError:
                pass
            s.close()
        assert time.monotonic() - started < 4, "stalled handshakes were not cut in time"

    # Garbage instead of a ClientHello is cut at once.
    for _ in range(budget * 2):
        with socket.create_connection((HOST, tls.port), timeout=5) as s:
            s.sendall(b"\x16\x03\x01\x00\x05hello" + b"\xff" * 64)
            s.settimeout(0.9)  # well inside handshake_timeout
            try:
                assert s.recv(4096)[:1] in (b"", b"\x15")  # nothing, or a TLS alert
            except ConnectionResetError:
                pass

    # Every place can be filled again: a full budget of real handshakes at once, no refusal.
    before = refused_so_far()

    async def fill():
        conns = await asyncio.gather(*[websockets.connect(tls.url(), ssl=ctx, ping_interval=None)
                                       for _ in range(budget)])
        for ws in conns:
            await ws.send("x")
        got = [await asyncio.wait_for(ws.recv(), 10) for ws in conns]
        for ws in conns:
            await ws.close()
        return got

    assert run_async(fill(), timeout=30) == ["x"] * budget
    assert refused_so_far() == before


# --------------------------------------------------------------- gateway and hub

def test_gateway_over_wss(server_factory, certs, backend):  # noqa: F811
    cert, key = certs
    api_port = free_port()
    # The backend calls the server API over plain HTTP on a port of its own.
    tls = TlsServer(server_factory, cert, key,
                    *gateway_sets(backend, f"api.listen={HOST}:{api_port}"),
                    env=GATEWAY_ENV)
    ctx = client_context(cert)

    async def main():
        async with websockets.connect(tls.url(), ssl=ctx, extra_headers=session("alice"),
                                      ping_interval=None) as ws:
            replies = []
            for i in range(20):
                await ws.send(f"m{i}")
            for _ in range(20):
                replies.append(await asyncio.wait_for(ws.recv(), 10))
            await ws.send(b"\x00\x01\xff")
            replies.append(await asyncio.wait_for(ws.recv(), 10))
            return replies

    replies = run_async(main(), timeout=60)
    assert replies == [f"echo: m{i}" for i in range(20)] + [b"\x00\x01\xff"]


def test_hub_over_wss_with_centrifuges_sdk(server_factory, tmp_path, certs):
    cert, key = certs
    api_port = free_port()
    admin_port = free_port()
    srv = start_hub(server_factory, tmp_path, f"server.tls_cert_file={cert}",
                    f"server.tls_key_file={key}", f"api.listen={HOST}:{api_port}",
                    f"admin.listen={HOST}:{admin_port}",
                    namespaces=[{"name": "chat", "allow_subscribe_for_client": True}],
                    env=ADMIN_ENV, ready=False)
    wait_tls_ready(srv, cert)
    url = f"wss://{HOST}:{srv.port}{WS_PATH}"
    run = sdk_clients(tmp_path, srv, [{"name": "alice", "token": connection_token("alice")}],
                      timeout=30, url=url, env={"NODE_EXTRA_CA_CERTS": str(cert)})
    try:
        connected = run.wait_event("connected", "alice", timeout=15)
        assert connected["transport"] == "websocket", connected
        since = run.mark()
        run.call("subscribe", "alice", channel="chat:room", options={})
        run.wait_event("sub_subscribed", "alice", channel="chat:room", since=since)
        r = hub_api(api_port, "publish", {"channel": "chat:room", "data": {"n": 1}})
        assert r.status == 200, r
        got = run.wait_event("sub_publication", "alice", channel="chat:room", since=since)
        assert got["data"] == {"n": 1}, got
    finally:
        run.stop()
        print(f"--- node {run.script.name} ---\n{run.transcript()}")
    wait_metric(admin_port, lambda m: m.get("wsvisor_connections") == 0, 10)
