"""A few seconds of the project's own load client (tools/wsload) against wsvisor:
the tool and the server agree on the wire, byte for byte (performance is measured by
bench/, never here)."""

import json
import os
import subprocess
from pathlib import Path

from conftest import HOST, scrape, wait_metric

WSLOAD = Path(os.environ.get("WSLOAD_BIN") or (Path(__file__).resolve().parents[2] / "build" / "wsload"))


def wsload(port, *args, timeout=60):
    assert WSLOAD.exists(), f"wsload not found at {WSLOAD} (set WSLOAD_BIN)"
    result = subprocess.run([str(WSLOAD), *args, "--host", HOST, "--port", str(port), "--quiet"],
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"wsload {args} exited {result.returncode}: {result.stderr}"
    return json.loads(result.stdout)


def test_echo_pipelined_and_binary(server_factory):
    srv = server_factory()
    text = wsload(srv.port, "echo", "--connections", "20", "--in-flight", "4", "--size", "64",
                  "--duration", "2")
    assert text["mismatches"] == 0
    assert text["connections_ok"] == 20
    assert text["messages_received"] > 100
    binary = wsload(srv.port, "echo", "--connections", "5", "--size", "4096", "--binary",
                    "--duration", "1")
    assert binary["mismatches"] == 0 and binary["messages_received"] > 10
    # Without --warmup the window opens as soon as every connection is up.
    assert text["window"]["all_connected"] and text["window"]["warmup_s"] == 0
    wait_metric(srv.port, lambda m: m["wsvisor_connections"] == 0, timeout=10,
                what="every wsload connection released")
    metrics = scrape(srv.port)
    assert metrics["wsvisor_messages_received_total"] >= (
        text["messages_received"] + binary["messages_received"])


def test_echo_warmup_measures_only_the_window(server_factory):
    """--warmup: rate and latencies count only in the window that opens once every
    connection is up and the warm-up has passed; it lasts --duration, and the whole-run
    counters still count the ramp and the warm-up."""
    srv = server_factory()
    result = wsload(srv.port, "echo", "--connections", "10", "--in-flight", "2",
                    "--warmup", "1", "--duration", "1.5")
    window = result["window"]
    assert {"ramp_s", "ramp_bound_hit", "all_connected", "warmup_s", "start_s", "seconds",
            "messages_received"} <= set(window), window
    assert window["all_connected"] is True and window["ramp_bound_hit"] is False, window
    assert result["connections_ok"] == 10 and result["mismatches"] == 0
    assert window["warmup_s"] == 1
    assert window["start_s"] >= window["ramp_s"] + 0.99, window
    assert 1.49 <= window["seconds"] < 1.5 + 2.0, window  # a loaded machine fires timers late
    assert result["elapsed_s"] >= window["start_s"] + window["seconds"]
    assert 0 < window["messages_received"] < result["messages_received"], (window, result)
    assert result["latency_us"]["count"] == window["messages_received"]
    assert result["messages_per_second"] > 0
    assert abs(result["messages_per_second"] * window["seconds"]
               - window["messages_received"]) <= 1


def test_connect_counts_every_upgrade(server_factory):
    srv = server_factory()
    result = wsload(srv.port, "connect", "--connections", "4", "--count", "200", "--duration", "10")
    assert result["upgrades"] == 200
    wait_metric(srv.port, lambda m: m["wsvisor_connections"] == 0, timeout=10,
                what="every upgrade released")
    metrics = scrape(srv.port)
    opened = metrics["wsvisor_connections_opened_total"]
    closed = metrics.total("wsvisor_connections_closed_total")
    assert opened == closed >= 200
