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


def test_reconnect_scenario_reports_each_fault(server_factory, tmp_path):
    """wsload reconnect with a scenario: a paced restart (1012 to all 40, each back in,
    none refused) and a fault the server refuses (its 400 in the report)."""
    from admin_helpers import ADMIN_ENV, TOKEN
    srv = server_factory("auth.mode=header", "faults.enabled=true", env=ADMIN_ENV)
    scenario = tmp_path / "restart.scenario"
    scenario.write_text("# a restart, then a bad fault\n"
                        "connections 40\nusers 4\nduration 5s\nmessage-interval 200ms\n"
                        'at 1s fault {"action":"restart","target":"client","spread":"1s"}\n'
                        'at 3s fault {"action":"stall","target":"client","share":2,"ms":5}\n')
    report = wsload(srv.port, "reconnect", "--scenario", str(scenario), "--admin-token", TOKEN)
    restart, bad = report["faults"]
    assert restart["answer"]["status"] == 200 and restart["answer"]["applied"] == 40, restart
    assert restart["closes_by_code"] == {"1012": 40}, restart
    assert restart["reconnects"] == 40 and restart["refusals"]["total"] == 0, restart
    assert restart["time_to_reconnect_ms"]["count"] == 40
    assert bad["answer"]["status"] == 400 and "share" in json.dumps(bad["answer"]), bad
    assert report["connected_at_end"] == 40
    messages = report["messages"]
    # At most the one message each client had in flight when its 1012 came.
    assert messages["sent"] > 500 and messages["lost"] <= 40, messages
    assert messages["unexpected"] == 0, messages
    wait_metric(srv.port, lambda m: m["wsvisor_connections"] == 0, timeout=10,
                what="every wsload connection released")


def test_a_bad_scenario_file_names_its_line_and_starts_nothing(server_factory, tmp_path):
    srv = server_factory()
    scenario = tmp_path / "bad.scenario"
    scenario.write_text("connections 5\nduration 2s\nat 1s fault {not json}\n")
    result = subprocess.run([str(WSLOAD), "reconnect", "--host", HOST, "--port", str(srv.port),
                             "--scenario", str(scenario), "--admin-token", "x", "--quiet"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, result
    assert f"{scenario}:3:" in result.stderr, result.stderr
    assert scrape(srv.port)["wsvisor_connections_opened_total"] == 0
