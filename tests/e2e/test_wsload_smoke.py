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
    wait_metric(srv.port, lambda m: m["wsvisor_connections"] == 0, timeout=10,
                what="every wsload connection released")
    metrics = scrape(srv.port)
    assert metrics["wsvisor_messages_received_total"] >= (
        text["messages_received"] + binary["messages_received"])


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
