"""The operator dashboard (CONTRACT section 15) in a real browser: headless Chromium
driven by chromedriver against a real server. The page's element ids and the event feed
are specified in notes/dashboard-feed.md.

Needs python3-selenium, chromium and chromium-driver (Debian packages). CI installs them:
there, a skip of this file is a failure of the set-up, not a pass.

Screenshots: one per test, in WSVISOR_SCREENSHOT_DIR (default: <dir of WSVISOR_BIN>/screenshots).
"""

import asyncio
import os
import re
import socket
import time

import pytest

SETUP_HINT = ("install python3-selenium chromium chromium-driver (CI does; a skip there "
              "means its set-up is broken)")
pytest.importorskip("selenium", reason=f"python3-selenium is missing: {SETUP_HINT}")

import dashboard_helpers as dh  # noqa: E402 (after the import check)
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

if not (os.access(dh.CHROMIUM, os.X_OK) and os.access(dh.CHROMEDRIVER, os.X_OK)):
    pytest.skip(f"chromium ({dh.CHROMIUM}) or chromedriver ({dh.CHROMEDRIVER}) is missing: "
                f"{SETUP_HINT}", allow_module_level=True)

from admin_helpers import (ADMIN_ENV, TOKEN, admin_json, connections, restarts,  # noqa: E402
                           tree, wait_close)
from conftest import (HOST, http_get, module_server, nofile_limit, scrape, wait_metric,  # noqa: E402
                      wait_until)

# K = 2 shards: with the "io" scheduler the actors run on the I/O threads, so both are 2
# (test_admin.py's check_tree_shape explains the tree's shape).
THREADS = ("server.io_threads=2", "server.actor_threads=2")
SHARDS = 2
COMMON = ("auth.mode=header",) + THREADS


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server for the tests that leave it running: token set, faults on."""
    with module_server(tmp_path_factory, *COMMON, "faults.enabled=true",
                       env=ADMIN_ENV) as srv:
        yield srv


@pytest.fixture
def driver(request):
    """A fresh headless Chromium; a screenshot of the page at the end of every test (also
    a failing one), then quit, always."""
    drv, profile = dh.make_driver()
    try:
        yield drv
    finally:
        try:
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
            path = dh.screenshot_dir() / f"{name}.png"
            drv.save_screenshot(str(path))
            print(f"screenshot: {path}")
            problems = dh.console_problems(drv)
            if problems:
                print("browser console problems:\n  " + "\n  ".join(problems))
        finally:
            dh.quit_driver(drv, profile)


@pytest.fixture
def clients():
    loop = dh.ClientLoop()
    try:
        yield loop
    finally:
        loop.shutdown()


def live_page(driver, srv, token=TOKEN):
    page = dh.Page(driver, srv.port).open(token)
    page.wait_live(SHARDS)
    return page


def assert_no_console_problems(driver):
    problems = dh.console_problems(driver)
    assert not problems, f"the browser reported: {problems}"


# ---------------------------------------------------------------------- loading


def test_load_with_token_in_fragment(server, driver):
    page = live_page(driver, server)
    state = page.read()
    # The fragment is gone from the address bar; the token is in session storage only.
    assert state["href"] == page.base, state["href"]
    assert TOKEN not in driver.current_url
    assert page.session_token() == TOKEN
    # The tree as the admin API has it, in order.
    api_tree = tree(server.port)
    expected = ["root"] + [c["name"] for c in api_tree["children"]]
    assert expected[:3] == ["root", "limit_guard", "janitor"], expected
    assert state["order"] == expected, state
    for name in expected:
        node = state["nodes"][name]
        assert re.fullmatch(r"\d+", node["restarts"] or ""), (name, node)
        assert node["state"] in ("running", "restarting"), (name, node)
    for i in range(SHARDS):
        assert re.fullmatch(r"\d+", state["nodes"][f"shard-{i}"]["connections"] or "")
    # The root shows its strategy and its restarts in the window against the budget.
    root = state["nodes"]["root"]["detail"]
    assert api_tree["strategy"] in root and re.search(r"\d+ / \d+ in ", root), root
    assert re.fullmatch(r"\d+", state["total"]), state
    # Faults are enabled on this server: the panel is there.
    assert page.el("#faults").is_displayed()
    assert page.el("#dashboard").is_displayed()
    assert not page.el("#auth-error").is_displayed()
    # Every chart is a canvas of its own.
    assert len(driver.find_elements("css selector", "#charts canvas")) == 7
    assert_no_console_problems(driver)


def test_wrong_token_is_refused(server, driver):
    page = dh.Page(driver, server.port).open("wrong")
    page.wait_text("#auth-error", lambda t: "The admin token was refused (401)" in t, 10,
                   "the 401 message")
    assert page.el("#auth-error").is_displayed()
    assert not page.el("#dashboard").is_displayed()
    assert page.read()["nodes"] == {}, "a tree was rendered for a refused token"
    assert page.read()["status"] == "refused"
    assert page.session_token() is None, "a refused token was kept"
    assert "wrong" not in driver.current_url
    assert page.el("#token-form").is_displayed()
    # Typing the right one brings the dashboard.
    page.type("#token-input", TOKEN)
    page.click("#token-submit")
    page.wait_live(SHARDS)
    assert not page.el("#auth-error").is_displayed()
    assert page.session_token() == TOKEN


# ------------------------------------------------------------------ connections


def test_connection_counts_follow_clients(server, driver, clients):
    page = live_page(driver, server)
    base = page.wait(lambda p: int(p["total"]) == dh.shard_sum(p) and p, 5,
                     "total and shard sum agreeing")
    base_total = int(base["total"])
    opened = clients.open(server.port, [f"count-{i % 10}" for i in range(50)])
    t0 = time.monotonic()
    page.wait(lambda p: int(p["total"]) == base_total + 50 and dh.shard_sum(p) == base_total + 50,
              2.0, "+50 connections in #total-connections and the shards")
    print(f"+50 shown {time.monotonic() - t0:.2f}s after the last client opened")
    clients.close(opened)
    page.wait(lambda p: int(p["total"]) == base_total and dh.shard_sum(p) == base_total, 5.0,
              "the counts back to the baseline")


def test_untrusted_text_is_never_markup(server, driver, clients):
    """User names come from outside: they reach the page as text (top users table)."""
    live_page(driver, server)
    user = '<img src=x id=injected onerror="window.__owned=1">'
    held = clients.open(server.port, [user] * 2)
    try:
        # Long keys are cut in the cell; the whole key is its title.
        WebDriverWait(driver, 3, poll_frequency=0.05).until(
            lambda d: d.execute_script(
                "return Array.from(document.querySelectorAll('#top-users td.key'))"
                ".some(td => td.title === arguments[0] && arguments[0].startsWith("
                "td.textContent.replace(/\u2026$/, '')));", user),
            "the user's name as text in #top-users")
        assert not driver.find_elements("css selector", "#injected")
        assert driver.execute_script("return window.__owned === undefined")
    finally:
        clients.close(held)


def test_close_by_user_from_the_page(server, driver, clients):
    page = live_page(driver, server)
    base_total = int(page.wait(lambda p: int(p["total"]) == dh.shard_sum(p) and p, 5,
                               "a settled count")["total"])
    victims = clients.open(server.port, ["evict-me"] * 3)
    page.wait(lambda p: int(p["total"]) == base_total + 3, 3, "the 3 connections shown")
    page.select("#close-kind", "user")
    page.type("#close-value", "evict-me")
    page.click("#close-run")
    page.wait_text("#close-result", lambda t: "closed 3" in t, 5, "closed 3")
    async def closes():
        return await asyncio.gather(*(wait_close(ws) for ws in victims))
    codes = clients.run(closes(), 20)
    assert [c for c, _ in codes] == [4002] * 3, codes
    clients.close(victims)
    page.wait(lambda p: int(p["total"]) == base_total, 5, "the connections gone from the page")
    assert connections(server.port, user="evict-me") == []


# ----------------------------------------------------------------------- actions


def test_sweep_from_the_page(server, driver):
    page = live_page(driver, server)
    page.select("#sweep-level", "conservative")
    page.select("#sweep-scope", "all")
    page.click("#sweep-run")
    text = page.wait_text(
        "#sweep-result",
        lambda t: re.fullmatch(r"conservative sweep of all: dead \d+, zombie \d+, idle \d+, "
                               r"healthy \d+ in \d+ ms", t), 5, "the sweep's result")
    print(f"sweep result: {text!r}")
    # A scoped one names its scope.
    page.select("#sweep-scope", "user")
    page.type("#sweep-value", "nobody")
    page.click("#sweep-run")
    page.wait_text("#sweep-result", lambda t: t.startswith("conservative sweep of user:nobody: "),
                   5, "the scoped sweep's result")
    wait_metric(server.port, lambda m: m.get("wsvisor_sweeps_total", kind="admin") >= 2, 5,
                what="two admin sweeps counted")


def test_fault_crash_limit_guard(server, driver):
    page = live_page(driver, server)
    before = int(page.read()["nodes"]["limit_guard"]["restarts"])
    metric_before = restarts(scrape(server.port), "limit_guard")
    page.click("#fault-crash-guard")
    page.wait_text("#fault-result", lambda t: t.startswith("applied 1"), 5, "the fault applied")
    page.wait(lambda p: int(p["nodes"]["limit_guard"]["restarts"]) > before, 5,
              "limit_guard's restarts going up")
    rows = page.wait(lambda p: driver.find_elements(
        "css selector", '#events li[data-event="restart"]'), 5, "a restart event")
    assert any("limit_guard" in r.text for r in rows), [r.text for r in rows]
    assert restarts(scrape(server.port), "limit_guard") > metric_before
    # A bad body: the server's message and the status are shown.
    page.type("#fault-body", '{"target":"moon","action":"crash"}')
    page.click("#fault-run")
    page.wait_text("#fault-result", lambda t: t.startswith("error: ") and "(HTTP 400)" in t, 5,
                   "the 400 shown")
    assert http_get(server.port, "/health/ready").status == 200


def test_drain_needs_confirmation(server_factory, driver):
    srv = server_factory(*COMMON, env=ADMIN_ENV)
    page = live_page(driver, srv)
    page.click("#drain-run")
    assert page.el("#drain-confirm").is_displayed()
    assert page.el("#drain-confirm").text == "Yes, drain this node"
    # Asking is not draining; cancel backs out.
    assert http_get(srv.port, "/health/ready").status == 200
    page.click("#drain-cancel")
    assert not page.el("#drain-confirm").is_displayed()
    assert http_get(srv.port, "/health/ready").status == 200
    page.click("#drain-run")
    page.click("#drain-confirm")
    page.wait_text("#drain-result", lambda t: t.startswith("draining"), 5, "the drain's answer")

    def not_ready():
        try:
            return http_get(srv.port, "/health/ready", timeout=1.0).status == 503
        except OSError:
            return not srv.alive()  # already gone: drained and exited
    wait_until(not_ready, 5, what="/health/ready 503 after the drain")
    assert srv.wait_exit(15) == 0, "the drained server did not exit 0"
    page.wait(lambda p: p["status"] == "reconnecting", 10, "the page reconnecting")
    before = page.read()
    assert before["events"] > 0
    # A server back on that port: the page finds it again by itself (backoff at most
    # 10 s) and keeps what it showed before; the new server's events come on top.
    srv2 = server_factory(*COMMON, env=ADMIN_ENV, port=srv.port)
    page.wait_live(SHARDS, timeout=20)
    page.wait(lambda p: p["received"] > before["received"] and p["events"] >= before["events"],
              5, "the new server's events added to the old ones")
    assert page.read()["nodes"]["root"]["restarts"] == "0"
    assert srv2.alive()


def open_raw_streams(port, n):
    """n raw /admin/events streams (each holds one of the server's 8 places)."""
    socks = []
    for _ in range(n):
        s = socket.create_connection((HOST, port), timeout=5)
        socks.append(s)
        s.sendall(f"GET /admin/events HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
                  f"Authorization: Bearer {TOKEN}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 65536:
            chunk = s.recv(4096)
            if not chunk:
                break
            head += chunk
        assert head.startswith(b"HTTP/1.1 200"), head[:200]
    return socks


def test_too_many_dashboards_then_recovers(server_factory, driver):
    srv = server_factory(*COMMON, env=ADMIN_ENV)
    socks = open_raw_streams(srv.port, 8)
    try:
        page = dh.Page(driver, srv.port).open(TOKEN)
        page.wait_text("#feed-notice", lambda t: "Too many dashboards" in t, 10,
                       "the too_many_streams notice")
        assert page.read()["status"] in ("connecting", "reconnecting")
        socks.pop().close()  # one place free: the page gets it at its next attempt
        page.wait_live(SHARDS, timeout=15)
        assert not page.el("#feed-notice").is_displayed()
    finally:
        for s in socks:
            s.close()


# -------------------------------------------------------------------- boundedness


def test_dom_stays_bounded_under_load(server_factory, driver, clients):
    """60 s of ~100 lifecycle events a second on top of a few thousand idle connections:
    the page's element count stays flat and #events never holds more than 100 rows."""
    srv = server_factory(*COMMON, "limits.max_per_user=0", "limits.max_per_ip=0",
                         env=ADMIN_ENV)
    page = live_page(driver, srv)
    # This process holds one socket per client; the server one per connection.
    idle_n = max(500, min(3000, (nofile_limit() - 2000) // 2))
    idle = clients.open(srv.port, [f"idle-{i % 40}" for i in range(idle_n)], timeout=180)
    page.wait(lambda p: int(p["total"]) == idle_n, 20, f"{idle_n} idle connections shown")

    # Each cycle closes a connection (an info event); when the server journals the open
    # too, half as many cycles make the same 100 events a second.
    churn = dh.Churn(srv.port, rate=50)
    job = clients.spawn(churn.run(max_seconds=120))
    try:
        dh.wait_seconds(2.0)
        journals_opens = bool(driver.find_elements(
            "css selector", '#events li[data-event="connection_opened"]'))
        if not journals_opens:
            churn.rate = 100
        started = time.monotonic()
        dh.wait_seconds(max(0.0, started + 10 - time.monotonic()))
        at10 = page.read()
        dh.wait_seconds(max(0.0, started + 60 - time.monotonic()))
        at60 = page.read()
        driver.save_screenshot(str(dh.screenshot_dir() / "test_dom_stays_bounded_under_load-at-60s.png"))
        points = driver.execute_script(
            "return Array.from(document.querySelectorAll('#charts canvas'),"
            " c => Number(c.dataset.points));")
        heap = driver.execute_script(
            "return performance.memory ? performance.memory.usedJSHeapSize : null;")
    finally:
        churn.request_stop(clients.loop)
        job.result(60)
    rate = (at60["received"] - at10["received"]) / 50.0
    print(f"DOM: {at10['dom']} elements at 10 s, {at60['dom']} at 60 s; #events rows "
          f"{at10['events']} / {at60['events']}; {rate:.0f} events/s received by the page "
          f"({churn.rate} cycles/s, opens journaled: {journals_opens}); {idle_n} idle "
          f"connections; {churn.cycles} cycles, {churn.errors} failed"
          f"{' (' + churn.last_error + ')' if churn.errors else ''}; chart points {points}; "
          f"JS heap {heap}")
    assert at10["events"] <= 100 and at60["events"] <= 100, (at10, at60)
    assert at60["events"] == 100, "the events list did not fill up under load"
    assert rate >= 80, f"the load made only {rate:.0f} events/s"
    limit = max(at10["dom"] * 1.05, at10["dom"] + 50)
    assert at60["dom"] <= limit, (f"the DOM grew from {at10['dom']} to {at60['dom']} "
                                  f"elements in 50 s")
    assert all(0 < p <= 120 for p in points), points
    assert at60["status"] == "live", at60
    assert churn.errors <= churn.cycles // 100, (churn.errors, churn.last_error)
    # Quiet again: the page comes back to the idle count.
    page.wait(lambda p: int(p["total"]) == idle_n, 10, "the idle count after the churn")
    clients.close(idle)
    assert admin_json(srv.port, "GET", "/admin/tree")["name"] == "root"
