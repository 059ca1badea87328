"""Cluster mode's end-to-end plumbing (CONTRACT 14): a real redis-server on a free
loopback port with a small RESP2 client of its own (no redis package: Debian's
python3-redis need not be installed), HAProxy in front of several nodes from the
repository's template (deploy/haproxy/haproxy.cfg.in), and N wsvisor nodes in cluster
mode started through conftest's server_factory.

redis-server is WSVISOR_REDIS_SERVER (default /usr/bin/redis-server, Debian's package
redis-server), haproxy WSVISOR_HAPROXY (default /usr/sbin/haproxy, package haproxy).
Loopback only; every wait is bounded, and every process is stopped (killed past its
bound) by the fixture that made it.

    def test_x(cluster_factory, redis_server, haproxy_factory):
        cluster = cluster_factory(3, "app.mode=hub", TRUSTED_LOCAL_PROXY)
        lb = haproxy_factory(cluster.ports)
        redis_server.cli("KEYS", "wsvisor:*")
        cluster.kill(1)                 # SIGKILL node-2, as a crash
"""

import contextlib
import os
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import (HOST, READY_TIMEOUT, REPO, Server, _child_preexec, clean_env, free_port,
                      is_listening, wait_until)

REDIS_SERVER = Path(os.environ.get("WSVISOR_REDIS_SERVER") or "/usr/bin/redis-server")
HAPROXY = Path(os.environ.get("WSVISOR_HAPROXY") or "/usr/sbin/haproxy")
HAPROXY_TEMPLATE = REPO / "deploy" / "haproxy" / "haproxy.cfg.in"

# For nodes behind HAProxy: believe its X-Forwarded-For (deploy/haproxy/haproxy.cfg.in).
TRUSTED_LOCAL_PROXY = 'server.trusted_proxies=["127.0.0.1/32"]'


def _require(program, package):
    if not program.exists():
        pytest.fail(f"{program} not found: apt-get install {package} "
                    f"(or set WSVISOR_{package.upper().replace('-', '_')})")


# -------------------------------------------------------------------------- RESP2

class RespError(Exception):
    """An error reply (`-ERR ...`, `-WRONGTYPE ...`); str() is its text."""


def resp_encode(*args):
    """One command as a RESP array of bulk strings; str is UTF-8, int and float decimal."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            arg = arg.encode()
        elif isinstance(arg, (int, float)) and not isinstance(arg, bool):
            arg = repr(arg).encode()
        elif not isinstance(arg, (bytes, bytearray)):
            raise TypeError(f"a RESP argument is str, bytes, int or float, not {arg!r}")
        out += [b"$%d\r\n" % len(arg), bytes(arg), b"\r\n"]
    return b"".join(out)


class RespConnection:
    """A RESP2 connection. Replies: simple string -> str, integer -> int, bulk string ->
    str (bytes with decode=False), nil bulk or nil array -> None, array -> list, error ->
    a RespError (raised by command(), returned by read_reply() and inside arrays, e.g.
    EXEC's). Every read has a deadline."""

    def __init__(self, port=None, password=None, timeout=5.0, decode=True, sock=None):
        self.sock = sock or socket.create_connection((HOST, port), timeout=timeout)
        self.timeout = timeout
        self.decode = decode
        self.buf = b""
        if password is not None:
            try:
                self.command("AUTH", password)
            except BaseException:
                self.close()
                raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        with contextlib.suppress(OSError):
            self.sock.close()

    def send(self, *args):
        self.sock.sendall(resp_encode(*args))

    def command(self, *args, timeout=None):
        """Sends one command and returns its reply; an error reply is raised."""
        self.send(*args)
        reply = self.read_reply(timeout)
        if isinstance(reply, RespError):
            raise reply
        return reply

    def read_reply(self, timeout=None):
        """The next reply (a pipelined one, a Pub/Sub message), within timeout seconds."""
        return self._parse(time.monotonic() + (self.timeout if timeout is None else timeout))

    def _fill(self, deadline):
        late = f"no complete RESP reply in time (have {self.buf[:200]!r})"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(late)
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError(late) from None
        if not chunk:
            raise ConnectionError(f"closed by Redis (have {self.buf[:200]!r})")
        self.buf += chunk

    def _line(self, deadline):
        while b"\r\n" not in self.buf:
            self._fill(deadline)
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n, deadline):
        while len(self.buf) < n + 2:
            self._fill(deadline)
        data, tail, self.buf = self.buf[:n], self.buf[n:n + 2], self.buf[n + 2:]
        if tail != b"\r\n":
            raise AssertionError(f"bulk string of {n} bytes not ended by CRLF: {tail!r}")
        return data

    def _parse(self, deadline):
        line = self._line(deadline)
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode("utf-8", "replace")
        if kind == b"-":
            return RespError(rest.decode("utf-8", "replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self._exact(n, deadline)
            return data.decode("utf-8", "replace") if self.decode else data
        if kind == b"*":
            n = int(rest)
            if n < 0:
                return None
            return [self._parse(deadline) for _ in range(n)]
        raise AssertionError(f"not a RESP2 reply: {line[:200]!r}")


# ------------------------------------------------------------------------ processes

class Daemon(Server):
    """A child process that is not wsvisor (redis-server, haproxy): conftest's Server for
    its log file and its bounded signal(), kill(), stop(), wait_exit(), with a command
    line of its own, started and waited for (wait_ready(), which subclasses define) at
    construction: a process that is not ready in time is stopped and the error raised.
    spawn() (re)starts it with the same command, appending to the log."""

    def __init__(self, cmd, log_path, port):  # pylint: disable=super-init-not-called
        # Server.__init__ builds a wsvisor command line; this process has its own.
        self.cmd = [str(c) for c in cmd]
        self.log_path = Path(log_path)
        self.port = port
        self.expected_exit = None
        self._log = None
        self.proc = None
        self.spawn()
        try:
            self.wait_ready()
        except BaseException:
            self.finish()
            raise

    def spawn(self):
        self.close_log()
        self._log = open(self.log_path, "ab")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(self.cmd, env=clean_env(), stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     preexec_fn=_child_preexec)

    def _wait(self, ready, timeout, what):
        """Polls ready() for at most timeout seconds; fails at once if the process exits."""
        def check():
            return "exited" if not self.alive() else ready()
        if wait_until(check, timeout, what=what) == "exited":
            raise AssertionError(f"{self.cmd[0]} exited with {self.proc.returncode} before "
                                 f"{what}\ncommand: {self.cmd}\n--- log ---\n{self.log()}")

    def finish(self):
        """Stops it (SIGTERM, bounded, then SIGKILL) and prints its log for pytest."""
        code = self.stop()
        self.close_log()
        print(f"--- {Path(self.cmd[0]).name} log ({self.log_path}) exit={code} ---")
        print(self.log()[-20000:])


class RedisServer(Daemon):
    """redis-server on 127.0.0.1, no persistence (--save '' --appendonly no), its files
    and log in `tmp_dir`; with `password`, --requirepass (cli() and connect() log in)."""

    def __init__(self, tmp_dir, port=None, password=None):
        _require(REDIS_SERVER, "redis-server")
        self.dir = Path(tmp_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.password = password
        port = port if port is not None else free_port()
        cmd = [REDIS_SERVER, "--bind", HOST, "--port", port, "--save", "", "--appendonly", "no",
               "--dir", self.dir, "--daemonize", "no"]
        if password is not None:
            cmd += ["--requirepass", password]
        super().__init__(cmd, self.dir / "redis.log", port)

    @property
    def url(self):
        """For cluster.redis_url."""
        return f"redis://{HOST}:{self.port}/0"

    def connect(self, decode=True, timeout=5.0):
        """A logged-in RespConnection (close it, or use it in a with block)."""
        return RespConnection(self.port, password=self.password, timeout=timeout, decode=decode)

    def cli(self, *args, timeout=5.0):
        """One command on a fresh connection: cli("SET", "k", "v") == "OK"."""
        with self.connect(timeout=timeout) as conn:
            return conn.command(*args)

    def wait_ready(self, timeout=READY_TIMEOUT):
        # This process's answer, not that of another one on the same port.
        mine = f"process_id:{self.pid}\r\n"
        self._wait(lambda: mine in self.cli("INFO", "server", timeout=1.0), timeout,
                   f"redis-server (pid {self.pid}) answering on port {self.port}")
        return self

    def restart(self):
        """stop() (SIGTERM, bounded) or nothing if it is dead, then the same command on the
        same port; the data is gone (no persistence)."""
        self.stop()
        self.spawn()
        return self.wait_ready()


def render_haproxy_cfg(template, frontend_port, node_ports, names=None):
    """The template's text with @FRONTEND_ADDR@ / @FRONTEND_PORT@ filled in and its line
    @SERVERS@ replaced by one `server <name> 127.0.0.1:<port> check` a node."""
    names = list(names or (f"node-{i + 1}" for i in range(len(node_ports))))
    assert len(names) == len(node_ports), (names, node_ports)
    servers = "".join(f"    server {name} {HOST}:{port} check\n"
                      for name, port in zip(names, node_ports))
    text, count = re.subn(r"(?m)^[ \t]*@SERVERS@[ \t]*\n?", lambda _: servers, template)
    assert count == 1, "the template must have exactly one @SERVERS@ line"
    return text.replace("@FRONTEND_ADDR@", HOST).replace("@FRONTEND_PORT@", str(frontend_port))


class HAProxy(Daemon):
    """haproxy -db from deploy/haproxy/haproxy.cfg.in, in front of `node_ports` (names
    node-1.. unless `names`), its frontend on `port` (a free one by default). Ready when the
    frontend accepts; the nodes enter the rotation by their health checks."""

    def __init__(self, tmp_dir, node_ports, port=None, names=None, template=HAPROXY_TEMPLATE):
        _require(HAPROXY, "haproxy")
        self.dir = Path(tmp_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        port = port if port is not None else free_port()
        self.cfg_path = self.dir / "haproxy.cfg"
        self.cfg_path.write_text(render_haproxy_cfg(Path(template).read_text(), port,
                                                    list(node_ports), names))
        check = subprocess.run([str(HAPROXY), "-c", "-f", str(self.cfg_path)], env=clean_env(),
                               stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               timeout=10)
        assert check.returncode == 0, (f"haproxy -c rejected {self.cfg_path}:\n"
                                       f"{check.stdout}{check.stderr}")
        super().__init__([HAPROXY, "-f", self.cfg_path, "-db"], self.dir / "haproxy.log", port)

    def wait_ready(self, timeout=READY_TIMEOUT):
        self._wait(lambda: is_listening(self.port, timeout=0.5), timeout,
                   f"haproxy accepting on port {self.port}")
        return self


# -------------------------------------------------------------------------- nodes

def cluster_sets(redis, node_id, *extra):
    """--set assignments for one cluster node on `redis`, then `extra` (which win)."""
    return ["cluster.mode=redis", f"cluster.redis_url={redis.url}", f"cluster.node_id={node_id}",
            *extra]


def cluster_env(redis, env=None):
    """`env` plus WSVISOR_CLUSTER_REDIS_PASSWORD when `redis` has a password."""
    env = dict(env or {})
    if redis.password is not None:
        env["WSVISOR_CLUSTER_REDIS_PASSWORD"] = redis.password
    return env


class Cluster:
    """N wsvisor nodes (conftest's Server objects, made by server_factory, which stops them
    and checks their exit codes at the end) in cluster mode on one Redis, with the same
    `extra` --set assignments and environment; node i is named node_ids[i] (node-1...).
    Indexing and iteration give the Server objects."""

    def __init__(self, server_factory, redis, n, *extra, env=None, node_ids=None, ready=True):
        self.redis = redis
        self.node_ids = list(node_ids or (f"node-{i + 1}" for i in range(n)))
        assert len(self.node_ids) == n, (n, self.node_ids)
        self.nodes = [server_factory(*cluster_sets(redis, node_id, *extra),
                                     env=cluster_env(redis, env), ready=False)
                      for node_id in self.node_ids]
        if ready:
            for node in self.nodes:
                node.wait_ready()

    def __len__(self):
        return len(self.nodes)

    def __getitem__(self, i):
        return self.nodes[i]

    def __iter__(self):
        return iter(self.nodes)

    @property
    def ports(self):
        return [node.port for node in self.nodes]

    def kill(self, i):
        """SIGKILL node i (a crash, `kill -9`); its exit is not counted as a failure."""
        self.nodes[i].expected_exit = None
        self.nodes[i].kill()

    def stop(self, i=None):
        """SIGTERM (a drain, bounded, then SIGKILL) node i, or every node still running;
        returns the exit code (a list for every node)."""
        if i is not None:
            return self.nodes[i].stop()
        return [node.stop() for node in self.nodes]


# ------------------------------------------------------------------------ fixtures

@pytest.fixture
def redis_server(tmp_path):
    """A RedisServer without a password, stopped at the end."""
    redis = RedisServer(tmp_path / "redis")
    yield redis
    redis.finish()


@pytest.fixture
def haproxy_factory(tmp_path):
    """haproxy_factory(node_ports, port=None, names=None) -> HAProxy; all stopped at the end."""
    made = []

    def make(node_ports, **kw):
        proxy = HAProxy(tmp_path / f"haproxy-{len(made)}", node_ports, **kw)
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        proxy.finish()


@pytest.fixture
def cluster_factory(redis_server, server_factory):
    """cluster_factory(n, *extra_sets, redis=None, env=None, node_ids=None) -> Cluster on
    `redis` (default: the redis_server fixture). The nodes are stopped (drained) at the
    end while Redis still runs, so that each leaves Redis the way it would in production."""
    made = []

    def make(n, *extra, redis=None, env=None, node_ids=None):
        cluster = Cluster(server_factory, redis or redis_server, n, *extra, env=env,
                          node_ids=node_ids)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.stop()
