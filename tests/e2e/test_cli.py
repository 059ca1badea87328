"""Command line, configuration and exit codes (CONTRACT sections 1 and 2)."""

import re
import socket
import time
import tomllib

import pytest

from conftest import CONFIG, HOST, Server, free_port, http_get, is_listening, run_cli

SECRET_TOKEN = "s3cr3t-token"
SECRET_JWT = "jwt-s3cr3t-0123456789-abcdefghijklm"  # 32+ bytes: shorter is refused
SECRET_ENV = {"WSVISOR_ADMIN_TOKEN": SECRET_TOKEN, "WSVISOR_AUTH_JWT_SECRET": SECRET_JWT}


def output(cp):
    return (cp.stdout or "") + (cp.stderr or "")


def assert_no_secret(text):
    for needle in (SECRET_TOKEN, SECRET_JWT, "s3cr3t"):
        assert needle not in text, f"secret {needle!r} printed:\n{text}"


def effective_value(text, section, key):
    """The value of section.key in --check-config output (TOML, with a fallback)."""
    try:
        return tomllib.loads(text)[section][key]
    except (tomllib.TOMLDecodeError, KeyError):
        pass
    current = None
    for line in text.splitlines():
        line = line.strip()
        m = re.match(r"^\[([A-Za-z0-9_.]+)\]", line)
        if m:
            current = m.group(1)
            continue
        m = re.match(rf"^{re.escape(key)}\s*=\s*(.+?)\s*(#.*)?$", line)
        if m and current == section:
            return tomllib.loads(f"v = {m.group(1)}")["v"]
        m = re.match(rf"^{re.escape(section)}\.{re.escape(key)}\s*=\s*(.+?)\s*(#.*)?$", line)
        if m:
            return tomllib.loads(f"v = {m.group(1)}")["v"]
    raise AssertionError(f"{section}.{key} not found in --check-config output:\n{text}")


class PortWatcher:
    """Polls a port while a process runs, to show it was never bound."""

    def __init__(self, port):
        self.port = port
        self.seen_listening = False

    def poll(self):
        if is_listening(self.port, timeout=0.2):
            self.seen_listening = True


def run_expecting_exit(tmp_path, sets=(), env=None, timeout=10.0, name="run", port=None):
    """Starts the server as for serving; waits for it to exit on its own. Watches the
    port meanwhile. Returns (exit code, log text, port watcher)."""
    port = port or free_port()
    srv = Server(tmp_path / f"{name}.log", port=port, sets=sets, env=env)
    watcher = PortWatcher(port)
    deadline = time.monotonic() + timeout
    try:
        while srv.alive() and time.monotonic() < deadline:
            watcher.poll()
            time.sleep(0.02)
        code = srv.wait_exit(0.1)
        assert code is not None, (
            f"server still running after {timeout}s, expected it to exit\n{srv.log()}")
        return code, srv.log(), watcher
    finally:
        srv.kill()
        srv.close_log()


# ------------------------------------------------------------------ plain flags

def test_version_exits_0_and_prints_a_version():
    cp = run_cli("--version", config=False)
    assert cp.returncode == 0, output(cp)
    assert re.search(r"\d+\.\d+(\.\d+)?", output(cp)), output(cp)


def test_help_exits_0():
    cp = run_cli("--help", config=False)
    assert cp.returncode == 0, output(cp)
    text = output(cp)
    for flag in ("--config", "--set", "--check-config", "--version"):
        assert flag in text, f"--help does not mention {flag}:\n{text}"


def test_unknown_flag_exits_2():
    cp = run_cli("--no-such-flag", config=False)
    assert cp.returncode == 2, output(cp)


def test_missing_config_file_exits_2(tmp_path):
    missing = tmp_path / "does-not-exist.toml"
    cp = run_cli("--config", str(missing), config=False)
    assert cp.returncode == 2, output(cp)
    assert "does-not-exist.toml" in output(cp), output(cp)


def test_bad_value_exits_2_naming_the_key(tmp_path):
    code, log, watcher = run_expecting_exit(tmp_path, sets=["limits.max_connections=abc"])
    assert code == 2, log
    assert "limits.max_connections" in log, log
    assert not watcher.seen_listening, "a configuration error bound the port"


@pytest.mark.parametrize("line7,key", [
    ('max_connections = "lots"', "max_connections"),
    ("max_per_user = -3", "max_per_user"),
    ('[nosuchsection]', "nosuchsection"),
], ids=["wrong-type", "out-of-range", "unknown-section"])
def test_bad_entry_in_file_exits_2_naming_key_and_line(tmp_path, line7, key):
    bad = tmp_path / "bad.toml"
    bad.write_text("# comment\n\n[server]\nport = 8080\n\n[limits]\n" + line7 + "\n"
                   + ("x = 1\n" if line7.startswith("[") else ""))
    cp = run_cli("--config", str(bad), config=False)
    text = output(cp)
    assert cp.returncode == 2, text
    assert key in text, text
    assert re.search(r"(line\D{0,3}7\b|:7\b)", text), f"no line number 7 in:\n{text}"


@pytest.mark.parametrize("how", ["set", "file"])
def test_secrets_only_from_environment(tmp_path, how):
    if how == "set":
        cp = run_cli("--set", "admin.token=from-the-command-line", "--check-config")
    else:
        cfg = tmp_path / "secret.toml"
        cfg.write_text('[admin]\ntoken = "from-the-command-line"\n')
        cp = run_cli("--config", str(cfg), "--check-config", config=False)
    assert cp.returncode == 2, output(cp)
    assert "admin.token" in output(cp) or "WSVISOR_ADMIN_TOKEN" in output(cp), output(cp)
    assert "from-the-command-line" not in output(cp), output(cp)


def test_unknown_key_in_file_exits_2_naming_key_and_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        "# a config with one unknown key\n"   # 1
        "\n"                                   # 2
        "[server]\n"                           # 3
        "port = 8080\n"                        # 4
        "\n"                                   # 5
        "[limits]\n"                           # 6
        "bogus_knob = 12\n"                    # 7
    )
    cp = run_cli("--config", str(bad), config=False)
    text = output(cp)
    assert cp.returncode == 2, text
    assert "bogus_knob" in text, text
    assert re.search(r"(line\D{0,3}7\b|:7\b)", text), f"no line number 7 in:\n{text}"
    assert "bad.toml" in text, f"the file is not named:\n{text}"


def test_unknown_wsvisor_env_variable_exits_2(tmp_path):
    code, log, watcher = run_expecting_exit(tmp_path, env={"WSVISOR_NOPE_KEY": "1"})
    assert code == 2, log
    assert "nope" in log.lower(), f"the error does not name WSVISOR_NOPE_KEY:\n{log}"
    assert not watcher.seen_listening


@pytest.mark.parametrize("sets,env,key", [
    (["limits.max_connections=100", "limits.soft_connections=200"], None,
     "soft_connections"),
    (["auth.mode=jwt"], None, "auth"),
    (["janitor.probe_timeout=2s", "limits.admission_timeout=1s"], None,
     ("probe_timeout", "admission_timeout")),
    (["janitor.ping_interval=soon"], None, "janitor.ping_interval"),
    (["limits.nonexistent_key=1"], None, "nonexistent_key"),
    (["janitor.ping_interval=10"], None, "janitor.ping_interval"),  # a duration needs a unit
    (["server.port=70000"], None, "server.port"),
    (["limits.max_connections=-5"], None, "limits.max_connections"),
    (["server.scheduler=turbo"], None, "server.scheduler"),
    ([], {"WSVISOR_LIMITS_MAX_CONNECTIONS": "many"}, "max_connections"),
])
def test_config_error_exits_2_before_binding(tmp_path, sets, env, key):
    # Hold the port: a server that tried to bind before validating would exit 1.
    port = free_port()
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind((HOST, port))
    holder.listen(8)
    try:
        code, log, _ = run_expecting_exit(tmp_path, sets=sets, env=env, port=port)
    finally:
        holder.close()
    assert code == 2, log
    keys = key if isinstance(key, tuple) else (key,)
    assert any(k.lower() in log.lower() for k in keys), f"the error does not name {key}:\n{log}"
    # And with the port free, it is never bound either.
    code, log, watcher = run_expecting_exit(tmp_path, sets=sets, env=env, name="run2")
    assert code == 2, log
    assert not watcher.seen_listening, "a configuration error bound the port"


# ------------------------------------------------------------------ listen addresses

@pytest.mark.parametrize("sets,key,fix", [
    (["server.host=example.com"], "server.host", '"127.0.0.1"'),
    (["admin.listen=metrics.internal:9090"], "admin.listen", '"127.0.0.1:9090"'),
    (["admin.listen=::1:9090"], "admin.listen", '"[::1]:9090"'),
], ids=["host-name", "admin-host-name", "admin-ipv6-without-brackets"])
def test_host_that_is_not_an_address_exits_2_before_binding(tmp_path, sets, key, fix):
    code, log, watcher = run_expecting_exit(tmp_path, sets=sets)
    assert code == 2, log
    assert key in log and fix in log, f"the error does not name {key} and {fix}:\n{log}"
    assert not watcher.seen_listening, "a configuration error bound the port"


def test_admin_listen_on_the_main_address_exits_2_before_binding(tmp_path):
    port = free_port()
    code, log, watcher = run_expecting_exit(
        tmp_path, sets=[f"admin.listen=0.0.0.0:{port}"], port=port)
    assert code == 2, log
    for part in ("admin.listen", "server.host", "server.port", "main listener"):
        assert part in log, f"the error does not say {part!r}:\n{log}"
    assert not watcher.seen_listening, "a configuration error bound the port"


def test_localhost_is_127_0_0_1(server_factory):
    cp = run_cli("--set", "server.host=localhost", "--set", "admin.listen=localhost:9090",
                 "--check-config")
    assert cp.returncode == 0, output(cp)
    assert effective_value(cp.stdout, "server", "host") == "127.0.0.1", cp.stdout
    assert effective_value(cp.stdout, "admin", "listen") == "127.0.0.1:9090", cp.stdout
    srv = server_factory("server.host=localhost")
    assert http_get(srv.port, "/health/ready").status == 200


# ------------------------------------------------------------------ --check-config

def test_check_config_prints_effective_config_without_binding():
    port = free_port()
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind((HOST, port))  # taken: --check-config must not try to bind
    holder.listen(8)
    try:
        cp = run_cli("--set", f"server.port={port}", "--set", "limits.max_per_user=7",
                     "--set", "janitor.ping_interval=2s", "--check-config")
    finally:
        holder.close()
    assert cp.returncode == 0, output(cp)
    assert effective_value(cp.stdout, "server", "port") == port, cp.stdout
    assert effective_value(cp.stdout, "limits", "max_per_user") == 7, cp.stdout
    assert effective_value(cp.stdout, "janitor", "ping_interval") == "2s", cp.stdout
    # Built-in / file defaults appear too.
    assert effective_value(cp.stdout, "limits", "max_connections") == 10000, cp.stdout
    assert effective_value(cp.stdout, "server", "ws_path") == "/ws", cp.stdout


def test_check_config_names_the_file_it_read(tmp_path):
    cp = run_cli("--check-config")
    assert cp.returncode == 0, output(cp)
    first = cp.stdout.splitlines()[0]
    assert first.startswith("#") and f"read from {CONFIG}" in first, cp.stdout
    tomllib.loads(cp.stdout)  # still valid TOML
    # Without a file (none given, none at the default path): the built-in defaults.
    cp = run_cli("--check-config", config=False)
    assert cp.returncode == 0, output(cp)
    assert "built-in defaults" in cp.stdout.splitlines()[0], cp.stdout
    tomllib.loads(cp.stdout)


def test_check_config_with_error_exits_2():
    cp = run_cli("--set", "limits.max_connections=abc", "--check-config")
    assert cp.returncode == 2, output(cp)
    assert "limits.max_connections" in output(cp)


def test_check_config_never_prints_secrets():
    cp = run_cli("--check-config", env=SECRET_ENV)
    assert cp.returncode == 0, output(cp)
    assert_no_secret(output(cp))
    # With the secret in use too.
    cp = run_cli("--set", "auth.mode=jwt", "--check-config", env=SECRET_ENV)
    assert cp.returncode == 0, output(cp)
    assert_no_secret(output(cp))
    assert effective_value(cp.stdout, "auth", "mode") == "jwt"


BACKEND_SECRETS = {"WSVISOR_UPSTREAM_TOKEN": "upstr3am-t0ken-s3cr3t",
                   "WSVISOR_API_KEY": "api-k3y-s3cr3t"}


def test_check_config_never_prints_the_backend_secrets():
    """upstream.token and api.key are shown as the other secrets are: "<redacted>" when set,
    "" when not, never their text."""
    cp = run_cli("--check-config", env={**SECRET_ENV, **BACKEND_SECRETS})
    assert cp.returncode == 0, output(cp)
    assert_no_secret(output(cp))
    for section, key in (("upstream", "token"), ("api", "key"), ("admin", "token"),
                         ("auth", "jwt_secret")):
        assert effective_value(cp.stdout, section, key) == "<redacted>", cp.stdout
    cp = run_cli("--check-config")
    assert cp.returncode == 0, output(cp)
    assert effective_value(cp.stdout, "upstream", "token") == "", cp.stdout
    assert effective_value(cp.stdout, "api", "key") == "", cp.stdout


@pytest.mark.parametrize("key,variable", [("upstream.token", "WSVISOR_UPSTREAM_TOKEN"),
                                          ("api.key", "WSVISOR_API_KEY")])
@pytest.mark.parametrize("how", ["set", "file"])
def test_backend_secrets_only_from_environment(tmp_path, key, variable, how):
    section, name = key.split(".")
    if how == "set":
        cp = run_cli("--set", f"{key}=from-the-command-line", "--check-config")
    else:
        cfg = tmp_path / "secret.toml"
        cfg.write_text(f'[{section}]\n{name} = "from-the-command-line"\n')
        cp = run_cli("--config", str(cfg), "--check-config", config=False)
    assert cp.returncode == 2, output(cp)
    assert key in output(cp) and variable in output(cp), output(cp)
    assert "from-the-command-line" not in output(cp), output(cp)


def test_backend_secret_that_cannot_go_in_a_header_exits_2_unshown(tmp_path):
    code, log, watcher = run_expecting_exit(
        tmp_path, env={"WSVISOR_UPSTREAM_TOKEN": "s3cr3t with spaces"})
    assert code == 2, log
    assert "WSVISOR_UPSTREAM_TOKEN" in log and "HTTP header" in log, log
    assert_no_secret(log)
    assert not watcher.seen_listening, "a configuration error bound the port"


def test_short_jwt_secret_exits_2_unless_allowed(tmp_path):
    weak = {"WSVISOR_AUTH_JWT_SECRET": "s3cr3t-but-short"}
    code, log, watcher = run_expecting_exit(tmp_path, sets=["auth.mode=jwt"], env=weak)
    assert code == 2, log
    assert "WSVISOR_AUTH_JWT_SECRET" in log and "32 bytes" in log, log
    assert "auth.allow_weak_secret" in log, f"the error does not name the way out:\n{log}"
    assert_no_secret(log)
    assert not watcher.seen_listening, "a configuration error bound the port"
    # The key lets a test use a short one.
    cp = run_cli("--set", "auth.mode=jwt", "--set", "auth.allow_weak_secret=true",
                 "--check-config", env=weak)
    assert cp.returncode == 0, output(cp)
    assert effective_value(cp.stdout, "auth", "allow_weak_secret") is True, cp.stdout
    assert_no_secret(output(cp))


def test_secrets_not_in_running_server_logs(server_factory):
    srv = server_factory("log.level=debug", env=SECRET_ENV)
    # Use the admin API with the token (header in the log would be a leak) and a few
    # plain requests, then stop.
    r = http_get(srv.port, "/admin/tree", headers={"Authorization": f"Bearer {SECRET_TOKEN}"})
    assert r.status in (200, 404), r
    http_get(srv.port, "/health")
    http_get(srv.port, "/metrics")
    code = srv.stop()
    assert code == 0, srv.log()
    assert_no_secret(srv.log())


# ------------------------------------------------------------------ backend keys

def test_backend_keys_have_their_defaults():
    cp = run_cli("--check-config")
    assert cp.returncode == 0, output(cp)
    expected = {
        ("upstream", "url"): "", ("upstream", "timeout"): "5s",
        ("upstream", "max_inflight"): 256, ("upstream", "per_connection_inflight"): 1,
        ("upstream", "queue"): 64, ("upstream", "retries"): 2,
        ("upstream", "backoff_min"): "100ms", ("upstream", "backoff_max"): "2s",
        ("upstream", "breaker_failures"): 20, ("upstream", "breaker_window"): "10s",
        ("upstream", "breaker_open"): "5s",
        ("upstream", "forward_headers"): ["Cookie", "Authorization", "User-Agent", "Origin"],
        ("upstream", "max_response_bytes"): 1048576,
        ("api", "listen"): "", ("api", "max_body_bytes"): 1048576,
        ("events", "url"): "", ("events", "timeout"): "2s", ("events", "retries"): 5,
        ("events", "queue"): 10000,
        ("gateway", "connect_path"): "", ("gateway", "message_path"): "/ws/message",
        ("gateway", "connect_concurrency"): 64, ("gateway", "error_frames"): True,
        ("cluster", "node_id"): "", ("app", "mode"): "echo",
    }
    for (section, key), value in expected.items():
        assert effective_value(cp.stdout, section, key) == value, f"{section}.{key}"


def test_backend_keys_from_the_environment_and_set():
    env = {"WSVISOR_UPSTREAM_URL": "http://127.0.0.1:8000/",
           "WSVISOR_GATEWAY_CONNECT_CONCURRENCY": "8",
           "WSVISOR_UPSTREAM_FORWARD_HEADERS": "Cookie",
           "WSVISOR_EVENTS_URL": "https://events.internal/in?src=e2e",
           "WSVISOR_CLUSTER_NODE_ID": "ws-e2e-1",
           "WSVISOR_APP_MODE": "gateway"}
    cp = run_cli("--set", "api.listen=localhost:9091", "--set", "gateway.connect_path=/connect",
                 "--check-config", env=env)
    assert cp.returncode == 0, output(cp)
    # A base URL is kept without its trailing "/", so that hook paths join with one.
    assert effective_value(cp.stdout, "upstream", "url") == "http://127.0.0.1:8000", cp.stdout
    assert effective_value(cp.stdout, "gateway", "connect_concurrency") == 8, cp.stdout
    assert effective_value(cp.stdout, "upstream", "forward_headers") == ["Cookie"], cp.stdout
    assert effective_value(cp.stdout, "events", "url") == "https://events.internal/in?src=e2e"
    assert effective_value(cp.stdout, "cluster", "node_id") == "ws-e2e-1", cp.stdout
    assert effective_value(cp.stdout, "app", "mode") == "gateway", cp.stdout
    assert effective_value(cp.stdout, "api", "listen") == "127.0.0.1:9091", cp.stdout
    assert effective_value(cp.stdout, "gateway", "connect_path") == "/connect", cp.stdout


@pytest.mark.parametrize("sets,env,parts", [
    (["app.mode=gateway"], None, ("app.mode", "upstream.url", "WSVISOR_UPSTREAM_URL")),
    (["upstream.url=backend:8000"], None, ("upstream.url", '"http://backend:8000"')),
    (["upstream.url=http://backend:8000/x?y=1"], None, ("upstream.url", "no query")),
    ([], {"WSVISOR_UPSTREAM_URL": "http://::1:8000"}, ("WSVISOR_UPSTREAM_URL", '"http://[::1]:8000"')),
    (["upstream.retries=11"], None, ("upstream.retries", "0 to 10")),
    (["upstream.backoff_min=3s"], None, ("upstream.backoff_min", "upstream.backoff_max")),
    (["upstream.forward_headers=[\"X Bad\"]"], None, ("upstream.forward_headers[0]",)),
    (["api.listen=0.0.0.0:{port}"], None, ("api.listen", "main listener")),
    (["admin.listen=127.0.0.1:{other}", "api.listen=127.0.0.1:{other}"], None,
     ("api.listen", "admin.listen")),
    (["api.listen=api.internal:9091"], None, ("api.listen", '"127.0.0.1:9091"')),
    (["events.url=ws://events"], None, ("events.url", "http:// or https://")),
    (["events.retries=101"], None, ("events.retries", "0 to 100")),
    (["gateway.message_path=ws/message"], None, ("gateway.message_path", '"/ws/message"')),
    ([], {"WSVISOR_GATEWAY_CONNECT_CONCURRENCY": "0"},
     ("WSVISOR_GATEWAY_CONNECT_CONCURRENCY", "gateway.connect_concurrency")),
    (["cluster.node_id=Node-1"], None, ("cluster.node_id", '"node-1"')),
    (["app.mode=Echo"], None, ("app.mode", '"echo"')),
], ids=["gateway-without-url", "url-without-scheme", "url-with-query", "url-ipv6-brackets",
        "retries", "backoff", "forward-header", "api-on-main", "api-on-admin", "api-host-name",
        "events-scheme", "events-retries", "message-path", "connect-concurrency-env",
        "node-id-case", "mode-case"])
def test_bad_backend_key_exits_2_before_binding(tmp_path, sets, env, parts):
    port, other = free_port(), free_port()
    sets = [s.format(port=port, other=other) for s in sets]
    code, log, watcher = run_expecting_exit(tmp_path, sets=sets, env=env, port=port)
    assert code == 2, log
    for part in parts:
        assert part in log, f"the error does not say {part!r}:\n{log}"
    assert not watcher.seen_listening, "a configuration error bound the port"


def test_upstream_url_password_is_never_printed(tmp_path):
    code, log, _ = run_expecting_exit(
        tmp_path, env={"WSVISOR_UPSTREAM_URL": "http://user:s3cr3t-pw@backend:8000"})
    assert code == 2, log
    assert "upstream.url" in log and "WSVISOR_UPSTREAM_TOKEN" in log, log
    assert "s3cr3t" not in log, log
    cp = run_cli("--set", "upstream.url=http://user:s3cr3t-pw@backend:8000", "--check-config")
    assert cp.returncode == 2, output(cp)
    assert "s3cr3t" not in output(cp), output(cp)


def test_help_names_every_secret():
    cp = run_cli("--help", config=False)
    assert cp.returncode == 0, output(cp)
    for variable in ("WSVISOR_ADMIN_TOKEN", "WSVISOR_AUTH_JWT_SECRET", "WSVISOR_UPSTREAM_TOKEN",
                     "WSVISOR_API_KEY"):
        assert variable in cp.stdout, cp.stdout


# ------------------------------------------------------------------ PORT, precedence

def test_port_env_sets_the_port(server_factory):
    port = free_port()
    server_factory(env={"PORT": str(port)}, port=port, set_port=False)
    r = http_get(port, "/health/live")
    assert r.status == 200, r


def test_env_variable_beats_port(server_factory):
    p_port, p_env = free_port(), free_port()
    server_factory(env={"PORT": str(p_port), "WSVISOR_SERVER_PORT": str(p_env)},
                   port=p_env, set_port=False)
    assert http_get(p_env, "/health/ready").status == 200
    assert not is_listening(p_port), "listening on PORT although WSVISOR_SERVER_PORT is set"


def test_set_beats_env_and_port(server_factory):
    p_port, p_env, p_set = free_port(), free_port(), free_port()
    server_factory(env={"PORT": str(p_port), "WSVISOR_SERVER_PORT": str(p_env)},
                   port=p_set)
    assert http_get(p_set, "/health/ready").status == 200
    assert not is_listening(p_port)
    assert not is_listening(p_env)


def test_precedence_in_effective_config(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[limits]\nmax_connections = 3000\nmax_per_user = 9\n"
                   "[server]\nport = 1111\n")
    # file < PORT
    cp = run_cli("--config", str(cfg), "--check-config", config=False, env={"PORT": "2222"})
    assert cp.returncode == 0, output(cp)
    assert effective_value(cp.stdout, "server", "port") == 2222, cp.stdout
    assert effective_value(cp.stdout, "limits", "max_connections") == 3000, cp.stdout
    # PORT < env
    env = {"PORT": "2222", "WSVISOR_SERVER_PORT": "3333", "WSVISOR_LIMITS_MAX_CONNECTIONS": "4000"}
    cp = run_cli("--config", str(cfg), "--check-config", config=False, env=env)
    assert cp.returncode == 0, output(cp)
    assert effective_value(cp.stdout, "server", "port") == 3333, cp.stdout
    assert effective_value(cp.stdout, "limits", "max_connections") == 4000, cp.stdout
    assert effective_value(cp.stdout, "limits", "max_per_user") == 9, cp.stdout
    # env < --set
    cp = run_cli("--config", str(cfg), "--set", "server.port=4444",
                 "--set", "limits.max_connections=5000", "--check-config", config=False,
                 env=env)
    assert cp.returncode == 0, output(cp)
    assert effective_value(cp.stdout, "server", "port") == 4444, cp.stdout
    assert effective_value(cp.stdout, "limits", "max_connections") == 5000, cp.stdout


def test_set_reads_toml_values_and_bare_strings():
    cp = run_cli("--set", "janitor.ping_interval=2s",
                 "--set", 'server.allowed_origins=["https://a.b"]', "--check-config")
    assert cp.returncode == 0, output(cp)
    assert effective_value(cp.stdout, "janitor", "ping_interval") == "2s", cp.stdout
    assert effective_value(cp.stdout, "server", "allowed_origins") == ["https://a.b"], cp.stdout


@pytest.mark.parametrize("how", ["set", "env"])
def test_value_that_starts_like_toml_and_does_not_parse_exits_2(tmp_path, how):
    value = '["https://a.b"'
    if how == "set":
        sets, env = [f"server.allowed_origins={value}"], None
    else:
        sets, env = [], {"WSVISOR_SERVER_ALLOWED_ORIGINS": value}
    code, log, watcher = run_expecting_exit(tmp_path, sets=sets, env=env)
    assert code == 2, log
    assert "server.allowed_origins" in log, log
    assert "not valid TOML" in log and "Error while parsing array" in log, log
    assert not watcher.seen_listening, "a configuration error bound the port"


# ------------------------------------------------------------------ bind failure

def test_bind_failure_exits_1(tmp_path):
    port = free_port()
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind((HOST, port))
    holder.listen(8)
    try:
        code, log, _ = run_expecting_exit(tmp_path, port=port, timeout=15.0)
    finally:
        holder.close()
    assert code == 1, log


# ------------------------------------------------------------------ --health

def test_health_probes_the_port_however_it_was_set(server_factory, tmp_path):
    """--health reads the configuration as the server does (file < PORT < WSVISOR_* <
    --set), so a container's HEALTHCHECK follows the port however it was set; 0.0.0.0
    is probed on 127.0.0.1."""
    srv = server_factory("server.host=0.0.0.0")
    elsewhere = free_port()
    cfg = tmp_path / "health.toml"
    cfg.write_text(f'[server]\nhost = "0.0.0.0"\nport = {srv.port}\n')
    for args, env, config in [
        (("--set", f"server.port={srv.port}"), None, True),
        ((), {"WSVISOR_SERVER_PORT": str(srv.port), "PORT": str(elsewhere)}, True),
        ((), {"PORT": str(srv.port)}, True),
        (("--config", str(cfg)), None, False),
    ]:
        cp = run_cli("--health", *args, env=env, config=config)
        assert cp.returncode == 0, f"{args} {env}: {output(cp)}"
        assert cp.stdout.strip() == "alive", f"{args} {env}: {output(cp)}"


def test_health_fails_with_its_cause(tmp_path):
    """Exit 1 with one line naming the cause when nothing answers (refused, or a port
    that accepts and never answers: bounded by the probe's 2 s), 2 on a configuration
    error, before any connection."""
    cp = run_cli("--health", "--set", f"server.port={free_port()}")
    assert cp.returncode == 1, output(cp)
    assert "refused" in cp.stderr.lower() and len(cp.stderr.strip().splitlines()) == 1, \
        output(cp)

    # Listening with a backlog but never accepting: the TCP handshake completes and no
    # answer ever comes.
    mute = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    mute.bind((HOST, 0))
    mute.listen(8)
    try:
        started = time.monotonic()
        cp = run_cli("--health", "--set", f"server.host={HOST}",
                     "--set", f"server.port={mute.getsockname()[1]}")
        took = time.monotonic() - started
    finally:
        mute.close()
    assert cp.returncode == 1, output(cp)
    assert "no answer within 2 s" in cp.stderr, output(cp)
    assert 1.5 < took < 5.0, f"probe took {took:.1f}s: {output(cp)}"

    for args in (("--set", "server.port=abc"), ("--set", "server.port=0"),
                 ("--check-config",)):
        cp = run_cli("--health", *args)
        assert cp.returncode == 2, f"{args}: {output(cp)}"
