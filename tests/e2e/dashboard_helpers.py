"""Helpers for the dashboard's browser tests (CONTRACT section 15; the page's element ids
and the feed: notes/dashboard-feed.md).

A headless Chromium is driven through chromedriver (Debian's chromium and
chromium-driver, python3-selenium). WebSocket clients live in an asyncio loop on a thread
of their own (`ClientLoop`), so that they keep answering the server's pings while the
test blocks on the browser. Every wait is bounded.
"""

import asyncio
import contextlib
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from admin_helpers import TOKEN, close_all, open_many, ws_connect
from conftest import BIN, HOST

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
WIDTH, HEIGHT = 1280, 800

# --------------------------------------------------------------------- browser


def screenshot_dir():
    """WSVISOR_SCREENSHOT_DIR, else <directory of the binary>/screenshots (created)."""
    d = Path(os.environ.get("WSVISOR_SCREENSHOT_DIR") or (BIN.parent / "screenshots"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def make_driver():
    """A headless Chromium with a fresh profile, window and viewport 1280x800. Returns
    (driver, profile directory); quit_driver() undoes both."""
    profile = tempfile.mkdtemp(prefix="wsvisor-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 f"--window-size={WIDTH},{HEIGHT}", f"--user-data-dir={profile}",
                 "--no-first-run", "--no-default-browser-check",
                 "--disable-background-networking", "--disable-extensions"):
        options.add_argument(flag)
    # The browser's console, to find CSP violations and script errors.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    except Exception:
        shutil.rmtree(profile, ignore_errors=True)
        raise
    driver.set_page_load_timeout(20)
    driver.set_script_timeout(10)
    # Headless Chromium's --window-size is the outer window: pin the viewport itself to
    # 1280x800, the size the page is laid out for (CONTRACT 15).
    with contextlib.suppress(WebDriverException):
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False})
    return driver, profile


def quit_driver(driver, profile):
    with contextlib.suppress(Exception):
        driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def console_problems(driver):
    """Console entries at SEVERE (script errors, CSP violations, failed loads) and every
    CSP report, as text."""
    try:
        entries = driver.get_log("browser")
    except WebDriverException:
        return []
    return [e["message"] for e in entries
            if e.get("level") == "SEVERE" or "Content Security Policy" in e.get("message", "")]


# ------------------------------------------------------------------------- page

# One round trip for everything the tests look at.
READ_PAGE_JS = r"""
const q = (s) => document.querySelector(s);
const nodes = {};
for (const el of document.querySelectorAll('#tree [data-node]')) {
  const t = (c) => { const e = el.querySelector(c); return e ? e.textContent : null; };
  nodes[el.dataset.node] = {restarts: t('.restarts'), state: t('.state'),
                            connections: t('.connections'), detail: t('.detail'),
                            classes: el.className};
}
return {
  status: q('#status').textContent,
  total: q('#total-connections').textContent,
  nodes: nodes,
  order: Array.from(document.querySelectorAll('#tree [data-node]')).map(e => e.dataset.node),
  events: q('#events').children.length,
  received: Number(q('#events').dataset.received || 0),
  dom: document.getElementsByTagName('*').length,
  href: location.href,
};
"""


class Page:
    """The dashboard in one browser tab."""

    def __init__(self, driver, port):
        self.driver = driver
        self.port = port

    @property
    def base(self):
        return f"http://{HOST}:{self.port}/admin/dashboard"

    def open(self, token=TOKEN):
        self.driver.get(self.base + (f"#token={token}" if token is not None else ""))
        return self

    def read(self):
        return self.driver.execute_script(READ_PAGE_JS)

    def el(self, css):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def text(self, css):
        return self.el(css).text

    def click(self, css):
        self.el(css).click()

    def select(self, css, value):
        Select(self.el(css)).select_by_value(value)

    def type(self, css, text):
        e = self.el(css)
        e.clear()
        e.send_keys(text)

    def session_token(self):
        return self.driver.execute_script(
            "return sessionStorage.getItem('wsvisor.admin_token');")

    def wait(self, predicate, timeout, what):
        """Polls predicate(self.read()) until truthy; the last page state in the error."""
        last = {}

        def check(_):
            last["page"] = self.read()
            return predicate(last["page"])

        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.05).until(check)
        except TimeoutException:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; "
                                 f"page: {last.get('page')!r}") from None

    def wait_text(self, css, predicate, timeout, what):
        last = {}

        def check(_):
            last["text"] = self.el(css).text
            return predicate(last["text"])

        try:
            WebDriverWait(self.driver, timeout, poll_frequency=0.05).until(check)
        except TimeoutException:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; "
                                 f"{css} reads {last.get('text')!r}") from None
        return last["text"]

    def wait_live(self, shards, timeout=10.0):
        """Live, with the root, the services and every shard shown."""
        names = ["root", "limit_guard", "janitor"] + [f"shard-{i}" for i in range(shards)]
        return self.wait(lambda p: p["status"] == "live" and all(n in p["nodes"] for n in names),
                         timeout, f"status live and tree nodes {names}")


def shard_sum(page_state):
    return sum(int(n["connections"]) for name, n in page_state["nodes"].items()
               if name.startswith("shard-"))


# ---------------------------------------------------------------- WebSocket side


class ClientLoop:
    """An asyncio loop on its own thread holding WebSocket clients."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.clients = []
        self.thread = threading.Thread(target=self._run, name="ws-clients", daemon=True)
        self.thread.start()

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro, timeout=60.0):
        """Runs coro on the loop; blocks until it is done (bounded)."""
        async def bounded():
            return await asyncio.wait_for(coro, timeout)
        return asyncio.run_coroutine_threadsafe(bounded(), self.loop).result(timeout + 5)

    def spawn(self, coro):
        """Starts coro on the loop; returns a concurrent.futures.Future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def open(self, port, users, concurrency=40, timeout=120.0):
        clients = self.run(open_many(port, users, concurrency=concurrency), timeout)
        self.clients.extend(clients)
        return clients

    def close(self, clients, timeout=30.0):
        self.run(close_all(clients, timeout=timeout), timeout + 5)
        ids = {id(c) for c in clients}
        self.clients = [c for c in self.clients if id(c) not in ids]

    def shutdown(self):
        with contextlib.suppress(Exception):
            self.close(list(self.clients))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        if not self.thread.is_alive():
            self.loop.close()


class Churn:
    """Opens and at once closes `rate` connections a second, in ticks of 100 ms: each
    cycle is a connection_opened and a connection_closed lifecycle event."""

    def __init__(self, port, rate, users=50, in_flight=400):
        self.port = port
        self.rate = rate
        self.users = users
        self.in_flight = in_flight
        self.stop = None
        self.cycles = 0
        self.errors = 0
        self.last_error = None

    async def _cycle(self, n, sem):
        try:
            ws = await ws_connect(self.port, f"churn-{n % self.users}", open_timeout=10)
            await ws.close()
            self.cycles += 1
        except Exception as e:  # noqa: BLE001 - counted, reported by the test
            self.errors += 1
            self.last_error = repr(e)
        finally:
            sem.release()

    async def run(self, max_seconds=600.0):
        self.stop = asyncio.Event()
        sem = asyncio.Semaphore(self.in_flight)
        tasks = set()
        loop = asyncio.get_running_loop()
        started = loop.time()
        n = 0
        tick = 0
        while not self.stop.is_set() and loop.time() - started < max_seconds:
            tick += 1
            due = int(self.rate * tick / 10) - int(self.rate * (tick - 1) / 10)
            for _ in range(due):
                if sem.locked():
                    break  # the server cannot keep up: do not pile up
                await sem.acquire()
                t = asyncio.ensure_future(self._cycle(n, sem))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
                n += 1
            next_tick = started + tick * 0.1
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stop.wait(), max(0.0, next_tick - loop.time()))
        if tasks:
            await asyncio.wait(tasks, timeout=20)

    def request_stop(self, loop):
        if self.stop is not None:
            loop.call_soon_threadsafe(self.stop.set)


def wait_seconds(seconds):
    """time.sleep for the long, bounded phases of a test (named for reading)."""
    time.sleep(seconds)
