"""Authentication and subprotocols (CONTRACT sections 2 `auth`, 4 `unauthorized`, 5
subprotocols): header mode, HS256 JWT from Authorization, the jwt.<token> subprotocol or
?token=, invalid tokens refused 401 without ever crashing the server."""

import asyncio
import hashlib
import hmac
import json

import pytest
import websockets

from admission_helpers import (RejectCounter, attempt, attempt_async, b64url, check_admitted,
                               check_refusal, make_jwt, now_s)
from conftest import http_get, module_server, run_async, run_cli, wait_until

SECRET = "e2e-jwt-secret-0123456789-abcdefghij"  # 32+ bytes: shorter is refused
ADMIN_TOKEN = "auth-admin-token"
JWT_ENV = {"WSVISOR_AUTH_JWT_SECRET": SECRET, "WSVISOR_ADMIN_TOKEN": ADMIN_TOKEN}


def token(sub="alice", exp_in=3600, secret=SECRET, **extra):
    claims = {"sub": sub, "iat": now_s()}
    if exp_in is not None:
        claims["exp"] = now_s() + exp_in
    claims.update(extra)
    return make_jwt(claims, secret)


def users(port):
    r = http_get(port, "/admin/connections", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status == 200, r
    return sorted(c["user"] for c in r.json())


def wait_users(port, expected, timeout=5):
    holder = {}

    def check():
        holder["last"] = users(port)
        return holder["last"] == sorted(expected)
    try:
        wait_until(check, timeout, what=f"/admin/connections users {sorted(expected)}")
    except AssertionError as e:
        raise AssertionError(f"{e}; last: {holder.get('last')}") from None


@pytest.fixture(scope="module")
def jwt_server(tmp_path_factory):
    with module_server(tmp_path_factory, "auth.mode=jwt", env=JWT_ENV) as srv:
        yield srv


# ------------------------------------------------------------------- valid tokens

@pytest.mark.parametrize("scheme", ["Bearer", "bearer"])
def test_jwt_from_authorization_header(jwt_server, scheme):
    srv = jwt_server
    a = check_admitted(attempt(srv.port, [("Authorization", f"{scheme} {token('alice')}")]),
                       f"Authorization: {scheme} <valid>")
    try:
        assert a.header("sec-websocket-protocol") is None, a
        wait_users(srv.port, ["alice"])
    finally:
        a.close()
    wait_users(srv.port, [])


def test_jwt_from_query_parameter(jwt_server):
    srv = jwt_server
    a = check_admitted(attempt(srv.port, path=f"/ws?token={token('bob')}"), "?token=<valid>")
    b = check_admitted(attempt(srv.port, path=f"/ws?x=1&token={token('carol')}&y=2"),
                       "?x=1&token=<valid>&y=2")
    try:
        assert a.header("sec-websocket-protocol") is None, a
        wait_users(srv.port, ["bob", "carol"])
    finally:
        a.close()
        b.close()
    wait_users(srv.port, [])


def test_jwt_from_subprotocol_selects_that_entry(jwt_server):
    srv = jwt_server
    tok = token("dave")
    a = check_admitted(attempt(srv.port, [("Sec-WebSocket-Protocol", f"jwt.{tok}")]),
                       "subprotocol jwt.<valid>")
    try:
        assert a.header("sec-websocket-protocol") == f"jwt.{tok}", a
        wait_users(srv.port, ["dave"])
    finally:
        a.close()
    wait_users(srv.port, [])

    # A real client (which fails a handshake that selects none of its protocols).
    async def main():
        ws = await websockets.connect(srv.url(), subprotocols=["chat", f"jwt.{tok}"],
                                      ping_interval=None, open_timeout=10)
        try:
            assert ws.subprotocol == f"jwt.{tok}", ws.subprotocol
            await ws.send("hello")
            assert await asyncio.wait_for(ws.recv(), 5) == "hello"
        finally:
            await ws.close()

    run_async(main(), timeout=30)


@pytest.mark.parametrize("offer", ["wsvisor.v1, jwt.{tok}", "jwt.{tok}, wsvisor.v1",
                                   "jwt.{tok}, chat, wsvisor.v1"])
def test_wsvisor_v1_wins_over_jwt_entry(jwt_server, offer):
    srv = jwt_server
    tok = token("erin")
    a = check_admitted(attempt(srv.port, [("Sec-WebSocket-Protocol", offer.format(tok=tok))]),
                       f"offer {offer}")
    try:
        assert a.header("sec-websocket-protocol") == "wsvisor.v1", a
        wait_users(srv.port, ["erin"])
    finally:
        a.close()
    wait_users(srv.port, [])

    async def main():
        ws = await websockets.connect(srv.url(), subprotocols=[f"jwt.{tok}", "wsvisor.v1"],
                                      ping_interval=None, open_timeout=10)
        try:
            assert ws.subprotocol == "wsvisor.v1", ws.subprotocol
        finally:
            await ws.close()

    run_async(main(), timeout=30)


def test_jwt_bearer_with_wsvisor_v1_offered(jwt_server):
    srv = jwt_server
    a = check_admitted(attempt(srv.port, [("Authorization", f"Bearer {token('frank')}"),
                                          ("Sec-WebSocket-Protocol", "wsvisor.v1")]), "bearer")
    try:
        assert a.header("sec-websocket-protocol") == "wsvisor.v1", a
    finally:
        a.close()


def test_jwt_without_exp_is_accepted_and_other_claims_ignored(jwt_server):
    """`exp` is checked when present; extra claims do not matter."""
    srv = jwt_server
    tok = make_jwt({"sub": "gina", "aud": "x", "nbf": now_s() - 10, "role": ["a"]}, SECRET)
    a = check_admitted(attempt(srv.port, [("Authorization", f"Bearer {tok}")]), "no exp")
    a.close()


# ----------------------------------------------------------------- invalid tokens

def signed(header_bytes, payload_bytes, secret=SECRET):
    """A token correctly HS256-signed over arbitrary header and payload bytes."""
    signing_input = f"{b64url(header_bytes)}.{b64url(payload_bytes)}"
    sig = b64url(hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest())
    return f"{signing_input}.{sig}"


def _invalid_tokens():
    now = now_s()
    good = token("mallory")
    h, p, s = good.split(".")
    other_payload = b64url(json.dumps({"sub": "admin", "exp": now + 3600}).encode())
    none_header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    hs512_header = b64url(json.dumps({"alg": "HS512", "typ": "JWT"}).encode())
    return {
        "expired": make_jwt({"sub": "mallory", "exp": now - 60}, SECRET),
        "expired-float": make_jwt({"sub": "mallory", "exp": now - 60.5}, SECRET),
        "wrong-secret": token("mallory", secret="not-the-secret"),
        "tampered-payload": f"{h}.{other_payload}.{s}",
        "truncated-signature": f"{h}.{p}.{s[:-4]}",
        "garbage": "garbage",
        "two-parts": f"{h}.{p}",
        "four-parts": f"{good}.{s}",
        "bad-base64": "!!!.@@@.###",
        "empty-parts": "..",
        "alg-none-unsigned": f"{none_header}.{p}.",
        "alg-none-signed": make_jwt({"sub": "mallory", "exp": now + 3600}, SECRET,
                                    header={"alg": "none"}),
        "alg-hs512-label": make_jwt({"sub": "mallory", "exp": now + 3600}, SECRET,
                                    header={"alg": "HS512", "typ": "JWT"}),
        "alg-hs256-label-other-mac": f"{hs512_header}.{p}.{s}",
        "header-not-json": signed(b"not json", json.dumps({"sub": "mallory"}).encode()),
        "payload-not-json": signed(b'{"alg":"HS256"}', b"{sub: mallory"),
        "payload-not-object": make_jwt([1, 2, 3], SECRET),
        "missing-sub": make_jwt({"exp": now + 3600}, SECRET),
        "empty-sub": make_jwt({"sub": "", "exp": now + 3600}, SECRET),
        "sub-not-string": make_jwt({"sub": 42, "exp": now + 3600}, SECRET),
        "exp-string": make_jwt({"sub": "mallory", "exp": str(now + 3600)}, SECRET),
        "long": "a" * 1500 + "." + "b" * 1500 + "." + "c" * 100,
        "binary-junk": b64url(bytes(range(256))) + "." + b64url(b"\xff\xfe") + ".x",
    }


INVALID = _invalid_tokens()


@pytest.mark.parametrize("where", ["bearer", "subprotocol", "query"])
@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_token_is_401_unauthorized(jwt_server, name, where):
    srv = jwt_server
    tok = INVALID[name]
    if where != "bearer" and any(c in tok for c in "!@#,"):
        pytest.skip("characters not allowed in a subprotocol token or a request target")
    counter = RejectCounter(srv.port)
    if where == "bearer":
        a = attempt(srv.port, [("Authorization", f"Bearer {tok}")])
    elif where == "subprotocol":
        a = attempt(srv.port, [("Sec-WebSocket-Protocol", f"jwt.{tok}")])
    else:
        a = attempt(srv.port, path=f"/ws?token={tok}")
    a.close()
    check_refusal(a, "unauthorized", where=f"{name} token in {where}")
    counter.add("unauthorized")
    counter.verify()
    assert srv.alive(), f"server died on a {name} token\n{srv.log()[-3000:]}"
    live = http_get(srv.port, "/health/live")
    assert live.status == 200, live


@pytest.mark.parametrize("headers,path", [
    ([], "/ws"),
    ([("Authorization", "Bearer ")], "/ws"),
    ([("Authorization", "Bearer")], "/ws"),
    ([("Authorization", "Basic YWxpY2U6cHc=")], "/ws"),
    ([("Authorization", token("x"))], "/ws"),  # no scheme
    ([("Sec-WebSocket-Protocol", "wsvisor.v1")], "/ws"),
    ([("Sec-WebSocket-Protocol", "jwt.")], "/ws"),
    ([], "/ws?token="),
    ([], "/ws?tok=abc"),
    ([("X-User-Id", "alice")], "/ws"),  # header mode's header means nothing in jwt mode
], ids=["nothing", "bearer-empty", "bearer-no-space", "basic", "no-scheme", "only-wsvisor-v1",
        "jwt-dot-empty", "query-empty", "query-other-name", "x-user-id"])
def test_missing_token_is_401(jwt_server, headers, path):
    srv = jwt_server
    counter = RejectCounter(srv.port)
    a = attempt(srv.port, headers, path=path)
    a.close()
    check_refusal(a, "unauthorized", where=f"{headers} {path}")
    counter.add("unauthorized")
    counter.verify()


def test_many_invalid_tokens_never_crash_or_500(jwt_server):
    srv = jwt_server
    counter = RejectCounter(srv.port)
    statuses = {}
    for i, (name, tok) in enumerate(sorted(INVALID.items()) * 3):
        a = attempt(srv.port, [("Authorization", f"Bearer {tok}")])
        statuses[a.status] = statuses.get(a.status, 0) + 1
        a.close()
        if a.status == 401:
            counter.add("unauthorized")
    assert statuses == {401: 3 * len(INVALID)}, statuses
    counter.verify()
    assert srv.alive()
    # And a valid token still works afterwards.
    a = check_admitted(attempt(srv.port, [("Authorization", f"Bearer {token('zed')}")]), "after")
    a.close()
    assert "500" not in " ".join(l for l in srv.log().splitlines() if "HTTP" in l)


# ----------------------------------------------------------------- per-user caps

def test_jwt_sub_is_the_user_for_per_user_caps(server_factory):
    srv = server_factory("auth.mode=jwt", "limits.max_per_user=2", env=JWT_ENV)
    counter = RejectCounter(srv.port)

    async def main():
        # Two different tokens (different sources) of the same sub count for one user.
        a = await websockets.connect(
            srv.url(), extra_headers=[("Authorization", f"Bearer {token('alice', iat_x=1)}")],
            ping_interval=None, open_timeout=10)
        b = await websockets.connect(srv.url() + f"?token={token('alice', exp_in=600)}",
                                     ping_interval=None, open_timeout=10)
        clients = [a, b]
        try:
            r = await attempt_async(srv.port, [("Sec-WebSocket-Protocol",
                                                f"jwt.{token('alice', exp_in=60)}")])
            r.close()
            check_refusal(r, "user_limit", where="third connection of sub alice")
            counter.add("user_limit")
            c = await attempt_async(srv.port, [("Authorization", f"Bearer {token('bob')}")])
            check_admitted(c, "bob while alice is at her cap")
            c.close()
            await asyncio.get_running_loop().run_in_executor(None, counter.verify)
        finally:
            await asyncio.gather(*[ws.close() for ws in clients], return_exceptions=True)

    run_async(main(), timeout=60)


def test_header_mode_user_is_the_header_value(server_factory):
    srv = server_factory("auth.mode=header", env={"WSVISOR_ADMIN_TOKEN": ADMIN_TOKEN})
    a = check_admitted(attempt(srv.port, [("X-User-Id", "user-42")]), "X-User-Id: user-42")
    try:
        wait_users(srv.port, ["user-42"])
    finally:
        a.close()


def test_mode_none_has_no_per_user_cap(server_factory):
    """auth.mode = "none": no user identity, so max_per_user does not apply (max_per_ip
    does)."""
    srv = server_factory("auth.mode=none", "limits.max_per_user=1", "limits.max_per_ip=3")
    counter = RejectCounter(srv.port)
    held = []
    try:
        for i in range(3):
            held.append(check_admitted(attempt(srv.port, [("X-User-Id", "same")]),
                                       f"connection {i + 1} with max_per_user=1 in mode none"))
        check_refusal(attempt(srv.port, [("X-User-Id", "same")]), "ip_limit",
                      where="fourth: the per-IP cap still applies")
        counter.add("ip_limit")
        counter.verify()
    finally:
        for a in held:
            a.close()


# ------------------------------------------------------------------ subprotocols

@pytest.mark.parametrize("offer,selected", [
    (None, None),
    ("wsvisor.v1", "wsvisor.v1"),
    ("chat, wsvisor.v1", "wsvisor.v1"),
    ("chat,wsvisor.v1", "wsvisor.v1"),
    ("chat", None),
])
def test_subprotocol_selection_in_mode_none(server_factory, offer, selected):
    srv = server_factory()
    headers = [] if offer is None else [("Sec-WebSocket-Protocol", offer)]
    a = check_admitted(attempt(srv.port, headers), f"offer {offer!r}")
    try:
        assert a.header("sec-websocket-protocol") == selected, a
    finally:
        a.close()


def test_subprotocol_wsvisor_v1_with_real_client(server_factory):
    srv = server_factory()

    async def main():
        ws = await websockets.connect(srv.url(), subprotocols=["chat", "wsvisor.v1"],
                                      ping_interval=None, open_timeout=10)
        try:
            assert ws.subprotocol == "wsvisor.v1"
            await ws.send("x")
            assert await asyncio.wait_for(ws.recv(), 5) == "x"
        finally:
            await ws.close()

    run_async(main(), timeout=30)


# ----------------------------------------------------------- configuration (sec. 2)

def _secret_absent(text):
    assert SECRET not in text, f"the JWT secret was printed:\n{text[-3000:]}"


def test_jwt_mode_without_secret_is_a_config_error():
    cp = run_cli("--set", "auth.mode=jwt", "--set", "server.port=0")
    assert cp.returncode == 2, (cp.returncode, cp.stdout, cp.stderr)
    assert "auth" in (cp.stdout + cp.stderr), (cp.stdout, cp.stderr)


def test_jwt_secret_not_accepted_from_set():
    cp = run_cli("--set", "auth.mode=jwt", "--set", f"auth.jwt_secret={SECRET}",
                 "--check-config")
    assert cp.returncode == 2, (cp.returncode, cp.stdout, cp.stderr)
    assert "jwt_secret" in (cp.stdout + cp.stderr), (cp.stdout, cp.stderr)
    _secret_absent(cp.stdout + cp.stderr)


def test_bad_auth_mode_is_a_config_error():
    cp = run_cli("--set", "auth.mode=oauth", "--check-config")
    assert cp.returncode == 2, (cp.returncode, cp.stdout, cp.stderr)
    assert "auth.mode" in (cp.stdout + cp.stderr) or "mode" in (cp.stdout + cp.stderr)


def test_jwt_secret_never_printed_or_logged(server_factory):
    cp = run_cli("--set", "auth.mode=jwt", "--check-config", env=JWT_ENV)
    assert cp.returncode == 0, (cp.returncode, cp.stdout, cp.stderr)
    _secret_absent(cp.stdout + cp.stderr)
    srv = server_factory("auth.mode=jwt", "log.level=trace", env=JWT_ENV)
    a = check_admitted(attempt(srv.port, [("Authorization", f"Bearer {token('alice')}")]),
                       "valid")
    a.close()
    r = attempt(srv.port, [("Authorization", f"Bearer {token('alice', secret='x')}")])
    check_refusal(r, "unauthorized")
    srv.stop()
    _secret_absent(srv.log())
