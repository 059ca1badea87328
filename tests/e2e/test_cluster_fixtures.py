"""The cluster tests' own plumbing (cluster_helpers.py), tested alone: the RESP2 client,
RedisServer (start, cli, restart, kill), the --set list of a cluster node, Cluster's
start and kill, and HAProxy from deploy/haproxy/haproxy.cfg.in in front of two plain
wsvisor nodes: both get requests, the client's address reaches them in X-Forwarded-For,
and a node whose /health/ready is 503 (draining) leaves the rotation within a couple of
seconds. Nothing here needs cluster mode's behaviour in the server: the HAProxy tests run
plain nodes, and Cluster's test needs only that the cluster keys are accepted."""

import contextlib
import http.server
import json
import signal
import socket
import threading
import time

import pytest

from cluster_helpers import (HAPROXY_TEMPLATE, TRUSTED_LOCAL_PROXY, RedisServer,  # noqa: F401
                             RespConnection, RespError, cluster_env, cluster_factory,
                             cluster_sets, haproxy_factory, redis_server, render_haproxy_cfg,
                             resp_encode)
from conftest import HOST, RawWs, http_get, is_listening, wait_until

API_KEY = "cluster-fixtures-api-key"


# -------------------------------------------------------------------------- RESP2

def test_resp_encode_is_an_array_of_bulk_strings():
    assert resp_encode("SET", "k", "v") == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"
    assert resp_encode("EXPIRE", b"k", 10, 1.5) == (
        b"*4\r\n$6\r\nEXPIRE\r\n$1\r\nk\r\n$2\r\n10\r\n$3\r\n1.5\r\n")
    assert resp_encode("SET", "k", "a\r\nb", "") == (
        b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\na\r\nb\r\n$0\r\n\r\n")
    assert resp_encode("ECHO", "é") == b"*2\r\n$4\r\nECHO\r\n$2\r\n\xc3\xa9\r\n"
    with pytest.raises(TypeError):
        resp_encode("SET", "k", None)


def test_resp_parser_reads_every_reply_type_across_fragments():
    """Replies written one byte at a time: simple string, error, integer, bulk (with a
    CRLF inside), empty bulk, nil bulk, nil array, empty array, nested arrays with a nil
    and an error inside."""
    wire = (b"+OK\r\n" b"-ERR wrong thing\r\n" b":-42\r\n" b"$4\r\na\r\nb\r\n" b"$0\r\n\r\n"
            b"$-1\r\n" b"*-1\r\n" b"*0\r\n"
            b"*3\r\n$1\r\nx\r\n*2\r\n:1\r\n$-1\r\n-WRONGTYPE no\r\n")
    ours, theirs = socket.socketpair()

    def dribble():
        with contextlib.suppress(OSError):
            for i in range(len(wire)):
                theirs.sendall(wire[i:i + 1])
                time.sleep(0.001)

    writer = threading.Thread(target=dribble, daemon=True)
    writer.start()
    conn = RespConnection(sock=ours, timeout=10.0)
    try:
        assert conn.read_reply() == "OK"
        err = conn.read_reply()
        assert isinstance(err, RespError) and str(err) == "ERR wrong thing"
        assert conn.read_reply() == -42
        assert conn.read_reply() == "a\r\nb"
        assert conn.read_reply() == ""
        assert conn.read_reply() is None
        assert conn.read_reply() is None
        assert conn.read_reply() == []
        nested = conn.read_reply()
        assert nested[:2] == ["x", [1, None]], nested
        assert isinstance(nested[2], RespError) and str(nested[2]) == "WRONGTYPE no"
        with pytest.raises(TimeoutError):  # nothing more comes: bounded
            conn.read_reply(timeout=0.2)
    finally:
        writer.join(timeout=10)
        conn.close()
        theirs.close()


# ---------------------------------------------------------------------- RedisServer

def test_redis_server_answers_commands_through_the_resp_client(redis_server):
    r = redis_server
    assert r.url == f"redis://{HOST}:{r.port}/0"
    assert r.cli("PING") == "PONG"
    assert r.cli("SET", "k", "v") == "OK"
    assert r.cli("GET", "k") == "v"
    assert r.cli("GET", "missing") is None                        # nil bulk
    assert r.cli("SET", "crlf", "a\r\nb") == "OK"
    assert r.cli("GET", "crlf") == "a\r\nb"                       # binary-safe
    assert r.cli("INCR", "n") == 1 and r.cli("INCRBY", "n", 41) == 42
    assert r.cli("RPUSH", "list", "a", "b", "c") == 3
    assert r.cli("LRANGE", "list", 0, -1) == ["a", "b", "c"]     # array
    assert r.cli("LRANGE", "nothing", 0, -1) == []                # empty array
    assert r.cli("MGET", "k", "missing") == ["v", None]          # nil inside an array
    assert r.cli("BLPOP", "nothing", "0.05") is None              # nil array (RESP2)
    with pytest.raises(RespError, match="^WRONGTYPE"):
        r.cli("LPUSH", "k", "x")
    with pytest.raises(RespError, match="^ERR unknown command"):
        r.cli("NOSUCHCOMMAND")
    # Started without persistence, as the cluster tests and tools/cluster-local.sh run it.
    assert r.cli("CONFIG", "GET", "save") == ["save", ""]
    assert r.cli("CONFIG", "GET", "appendonly") == ["appendonly", "no"]

    with r.connect(decode=False) as conn:
        # A transaction: errors inside EXEC's array are returned, not raised.
        assert conn.command("MULTI") == "OK"
        assert conn.command("SET", "t", "1") == "QUEUED"
        assert conn.command("LPUSH", "t", "x") == "QUEUED"
        replies = conn.command("EXEC")
        assert replies[0] == "OK" and isinstance(replies[1], RespError), replies
        # Pipelined: two commands sent, two replies read in order; bytes with decode=False.
        conn.send("GET", "t")
        conn.send("GET", "missing")
        assert conn.read_reply() == b"1"
        assert conn.read_reply() is None


def test_redis_server_with_a_password(tmp_path):
    r = RedisServer(tmp_path / "redis", password="s3cret-pass")
    try:
        assert r.cli("PING") == "PONG"                         # cli() logs in
        with RespConnection(r.port) as anonymous:
            with pytest.raises(RespError, match="^NOAUTH"):
                anonymous.command("GET", "k")
        with pytest.raises(RespError, match="WRONGPASS|invalid password"):
            RespConnection(r.port, password="wrong")
        assert cluster_env(r, {"X": "1"}) == {"X": "1",
                                              "WSVISOR_CLUSTER_REDIS_PASSWORD": "s3cret-pass"}
    finally:
        r.finish()


def test_redis_server_restart_keeps_the_port_and_loses_the_data(redis_server):
    r = redis_server
    port, pid = r.port, r.pid
    r.cli("SET", "k", "v")
    r.restart()
    assert r.port == port and r.pid != pid and r.alive()
    assert r.cli("PING") == "PONG"
    assert r.cli("GET", "k") is None  # --save '' --appendonly no: nothing survives


def test_redis_server_kill_then_restart(redis_server):
    r = redis_server
    r.kill()
    assert not r.alive()
    assert r.proc.returncode == -signal.SIGKILL
    assert not is_listening(r.port)
    r.restart()  # after a kill: starts again on the same port
    assert r.cli("PING") == "PONG"


def test_cluster_starts_named_nodes_and_a_killed_one_is_no_failure(cluster_factory, redis_server):
    """Cluster through conftest's server_factory: n nodes, each with its cluster sets and
    id, ready; kill(i) is a SIGKILL that the teardown does not count as a bad exit. (This
    needs only that the server accepts the cluster keys, not cluster mode's behaviour.)"""
    cluster = cluster_factory(2, env={"WSVISOR_API_KEY": API_KEY})
    assert len(cluster) == 2 and cluster.node_ids == ["node-1", "node-2"]
    assert [served_by(node.port) for node in cluster] == ["node-1", "node-2"]
    assert cluster[0].cmd[-6:] == ["--set", "cluster.mode=redis", "--set",
                                   f"cluster.redis_url={redis_server.url}",
                                   "--set", "cluster.node_id=node-1"]
    cluster.kill(1)
    assert not cluster[1].alive() and cluster[0].alive()
    assert cluster.ports == [cluster[0].port, cluster[1].port]


def test_cluster_sets_name_the_node_and_its_redis(redis_server):
    sets = cluster_sets(redis_server, "node-7", "app.mode=hub", TRUSTED_LOCAL_PROXY)
    assert sets == ["cluster.mode=redis",
                    f"cluster.redis_url=redis://{HOST}:{redis_server.port}/0",
                    "cluster.node_id=node-7", "app.mode=hub",
                    'server.trusted_proxies=["127.0.0.1/32"]']
    assert cluster_env(redis_server) == {}  # no password, nothing added


# --------------------------------------------------------------------------- HAProxy

def test_haproxy_template_fills_every_placeholder():
    text = render_haproxy_cfg(HAPROXY_TEMPLATE.read_text(), 18080, [18081, 18082],
                              names=["a", "b"])
    directives = [line.split("#")[0].strip() for line in text.splitlines()]
    directives = [d for d in directives if d]
    assert not [d for d in directives if "@" in d], "a placeholder is left"
    assert f"bind {HOST}:18080" in directives
    assert f"    server a {HOST}:18081 check\n    server b {HOST}:18082 check\n" in text
    # What the template promises the nodes and WebSockets.
    for want in ("balance leastconn", "option httpchk GET /health/ready",
                 "http-check expect status 200", "default-server inter 500ms fall 1 rise 2",
                 "option forwardfor", "timeout tunnel 1h"):
        assert want in directives, want
    for key in ("timeout client-fin", "timeout http-request"):
        assert any(d.startswith(key + " ") for d in directives), key
    assert not [d for d in directives if "http-server-close" in d]


def _node(server_factory, node_id, *sets):
    """A plain (no cluster mode) node that tells its name in GET /api/info."""
    return server_factory(f"cluster.node_id={node_id}", *sets, env={"WSVISOR_API_KEY": API_KEY})


def served_by(port):
    """The node that answered GET /api/info through `port`."""
    r = http_get(port, "/api/info", headers={"X-API-Key": API_KEY}, timeout=3)
    assert r.status == 200, r
    return r.json()["node"]


def test_haproxy_balances_over_two_nodes(server_factory, haproxy_factory):
    a, b = _node(server_factory, "node-a"), _node(server_factory, "node-b")
    lb = haproxy_factory([a.port, b.port], names=["node-a", "node-b"])
    seen = [served_by(lb.port) for _ in range(20)]
    # Sequential requests leave every node at 0 open connections: leastconn is then
    # round robin among equals.
    assert seen.count("node-a") >= 5 and seen.count("node-b") >= 5, seen
    r = http_get(lb.port, "/health")
    assert r.status == 200 and r.json()["status"] == "ready", r


class _HeaderEcho(http.server.BaseHTTPRequestHandler):
    """A backend that answers every GET 200 with the request's headers as JSON, the lines
    of a repeated header joined with ", " (RFC 7230 3.2.2, as wsvisor reads them)."""

    def do_GET(self):  # noqa: N802 - http.server's name
        names = {k.lower() for k in self.headers.keys()}
        body = json.dumps({k: ", ".join(self.headers.get_all(k)) for k in names}).encode()
        self.send_response(200)  # HTTP/1.0: the body ends with the connection
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # HAProxy resets its health checks' connections once answered


def test_haproxy_appends_the_client_address_to_x_forwarded_for(haproxy_factory):
    backend = _QuietServer((HOST, 0), _HeaderEcho)
    thread = threading.Thread(target=backend.serve_forever, daemon=True)
    thread.start()
    try:
        lb = haproxy_factory([backend.server_address[1]])
        assert http_get(lb.port, "/").json()["x-forwarded-for"] == HOST
        # A client's own header is kept and the address HAProxy saw comes after it: the
        # node takes the last address that is not a trusted proxy's.
        spoofed = http_get(lb.port, "/", headers={"X-Forwarded-For": "203.0.113.9"}).json()
        assert spoofed["x-forwarded-for"].replace(" ", "") == f"203.0.113.9,{HOST}", spoofed
    finally:
        backend.shutdown()
        backend.server_close()
        thread.join(timeout=5)


def test_haproxy_leaves_out_a_draining_node(server_factory, haproxy_factory):
    """SIGTERM to node-a with a long drain (a client that never answers the close keeps it
    draining): its /health/ready is 503 at once, and within a couple of seconds HAProxy
    sends everything to node-b, while node-a is still alive and draining."""
    a = _node(server_factory, "node-a", "shutdown.drain_timeout=30s", "shutdown.drain_spread=20s",
              "janitor.close_timeout=30s")
    b = _node(server_factory, "node-b")
    lb = haproxy_factory([a.port, b.port], names=["node-a", "node-b"])
    wait_until(lambda: {served_by(lb.port) for _ in range(4)} == {"node-a", "node-b"}, 5,
               what="both nodes in the rotation")
    silent = RawWs(a.port)  # held directly on node-a, never answers its 1001
    try:
        a.signal(signal.SIGTERM)
        t0 = time.monotonic()
        wait_until(lambda: http_get(a.port, "/health/ready", timeout=1).status == 503, 2,
                   what="node-a's readiness 503")
        assert http_get(a.port, "/health/ready").json() == {"status": "draining"}

        def only_b():
            return all(served_by(lb.port) == "node-b" for _ in range(6))
        wait_until(only_b, 3, interval=0.05, what="HAProxy routing to node-b only")
        left_after = time.monotonic() - t0
        assert left_after < 3, left_after
        assert a.alive(), "node-a exited: the test proves nothing about the 503"
        # Still only node-b a moment later, and a WebSocket through HAProxy is upgraded.
        assert {served_by(lb.port) for _ in range(10)} == {"node-b"}
        ws = RawWs(lb.port)
        ws.close()
        # HAProxy took it out for its answer (Layer7, 503), not for a refused connection.
        wait_until(lambda: "node-a is DOWN" in lb.log(), 2, what="HAProxy's log line")
        down = [l for l in lb.log().splitlines() if "node-a is DOWN" in l]
        assert "503" in down[0] and "Layer7" in down[0], down
        print(f"node-a out of the rotation {left_after:.2f}s after SIGTERM")
    finally:
        silent.close()
