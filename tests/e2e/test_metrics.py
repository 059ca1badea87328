"""/metrics of the real binary at start-up: every series of CONTRACT section 6 and those
beyond it (README, Metrics) exist before anything happened, the process_* readings are
the process's own, and the exposition is valid text format 0.0.4, checked by a strict
parser here and, where installed, by python3-prometheus-client's parser and promtool."""

import math
import os
import re
import shutil
import subprocess
import time

import pytest

from conftest import (ADDITIONAL_COUNTERS, ADDITIONAL_HISTOGRAMS, ADDITIONAL_PROCESS_SERIES,
                      CONTRACT_HISTOGRAMS, REPO, contract_startup_series, http_get,
                      module_server, nofile_limit, run_cli, scrape)

HISTOGRAMS = CONTRACT_HISTOGRAMS + list(ADDITIONAL_HISTOGRAMS)


@pytest.fixture(scope="module")
def startup(tmp_path_factory):
    """A server and the text of its first scrape, taken as soon as it is ready, with the
    wall-clock times just before the launch and just after that scrape."""
    launched_after = time.time()
    with module_server(tmp_path_factory) as srv:
        r = http_get(srv.port, "/metrics")
        assert r.status == 200, r
        scraped_before = time.time()
        yield srv, r.body.decode("utf-8"), launched_after, scraped_before


# ------------------------------------------------------------- strict text parser

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL_NAME = r"[a-zA-Z_][a-zA-Z0-9_]*"
_VALUE = re.compile(r"^(?:[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]Inf|NaN)$")
_LABEL = re.compile(rf'({_LABEL_NAME})="((?:[^"\\\n]|\\[\\"n])*)"')
_SAMPLE = re.compile(rf"^({_NAME})(\{{.*\}})? (\S+)$")
_HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")


def _unescape(value):
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def _parse_labels(text, line):
    """{name: value} of a '{a="x",b="y"}' block; an AssertionError on anything else."""
    body = text[1:-1]
    labels = {}
    pos = 0
    while pos < len(body):
        m = _LABEL.match(body, pos)
        assert m, f"bad label syntax at {body[pos:]!r} in {line!r}"
        assert m.group(1) not in labels, f"label {m.group(1)} twice in {line!r}"
        labels[m.group(1)] = _unescape(m.group(2))
        pos = m.end()
        if pos < len(body):
            assert body[pos] == ",", f"expected ',' at {body[pos:]!r} in {line!r}"
            pos += 1
    return labels


def parse_strict(text):
    """Parses the text exposition format 0.0.4 as Prometheus' own parser would, plus the
    rules a scrape of one process should keep: HELP and TYPE once per family and before
    its samples, no timestamps, no sample twice, a family's samples together, counters
    named *_total, histograms with le-ascending cumulative buckets ending in +Inf that
    equals _count. Returns ({family: type}, {(name, sorted labels): value})."""
    assert text.endswith("\n"), "the exposition must end with a newline"
    types, helps, samples = {}, {}, {}
    finished = set()  # families whose samples are behind us
    current = None
    for line in text.split("\n")[:-1]:
        assert line, "empty line in the exposition"
        if line.startswith("#"):
            m = re.match(rf"^# (HELP|TYPE) ({_NAME}) (.*)$", line)
            assert m, f"comment that is neither HELP nor TYPE: {line!r}"
            keyword, family, rest = m.groups()
            assert family not in finished and family != current, (
                f"{keyword} of {family} after its samples: {line!r}")
            if keyword == "HELP":
                assert family not in helps, f"second HELP for {family}"
                assert rest.strip(), f"empty HELP for {family}"
                assert not re.search(r"\\[^\\n]", rest), f"bad escape in HELP: {line!r}"
                helps[family] = rest
            else:
                assert family not in types, f"second TYPE for {family}"
                assert rest in ("counter", "gauge", "histogram", "summary", "untyped"), line
                types[family] = rest
            continue
        m = _SAMPLE.match(line)
        assert m, f"unparsable sample line (a timestamp, or bad syntax): {line!r}"
        name, label_text, value = m.groups()
        labels = _parse_labels(label_text, line) if label_text else {}
        assert _VALUE.match(value), f"bad value {value!r} in {line!r}"
        family = name
        if name not in types:
            for suffix in _HISTOGRAM_SUFFIXES:
                base = name[: -len(suffix)]
                if name.endswith(suffix) and types.get(base) == "histogram":
                    family = base
                    break
        assert family in types, f"sample before its family's TYPE: {line!r}"
        assert family in helps, f"family {family} without HELP"
        if family != current:
            assert family not in finished, f"samples of {family} not together: {line!r}"
            if current is not None:
                finished.add(current)
            current = family
        key = (name, tuple(sorted(labels.items())))
        assert key not in samples, f"sample twice: {line!r}"
        samples[key] = float(value)
    for family, kind in types.items():
        if kind == "counter":
            assert family.endswith("_total"), f"counter {family} not named *_total"
        if kind == "histogram":
            _check_histogram(family, samples)
    return types, samples


def _check_histogram(family, samples):
    buckets = sorted((float(dict(labels)["le"]), value)
                     for (name, labels), value in samples.items() if name == family + "_bucket")
    assert buckets, f"histogram {family} without buckets"
    assert buckets[-1][0] == math.inf, f"histogram {family} has no +Inf bucket"
    counts = [count for _, count in buckets]
    assert counts == sorted(counts), f"{family} buckets are not cumulative: {buckets}"
    assert samples.get((family + "_count", ())) == buckets[-1][1], f"{family}_count != +Inf"
    assert (family + "_sum", ()) in samples, f"{family}_sum missing"


def finite_bounds(samples, histogram):
    return sorted(float(dict(labels)["le"]) for (name, labels) in samples
                  if name == histogram + "_bucket" and dict(labels)["le"] != "+Inf")


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))))


# ------------------------------------------------------------------------- tests

def test_exposition_is_strict_text_format(startup):
    _, text, _, _ = startup
    types, _ = parse_strict(text)
    for histogram in HISTOGRAMS:
        assert types.get(histogram) == "histogram", histogram
    for counter in ADDITIONAL_COUNTERS:
        assert types.get(counter) == "counter", counter
    for name, kind in ADDITIONAL_PROCESS_SERIES.items():
        assert types.get(name) == kind, name
    assert types.get("wsvisor_build_info") == "gauge"


def test_contract_series_exist_at_startup(startup):
    _, text, _, _ = startup
    _, samples = parse_strict(text)
    missing, wrong = [], []
    for name, labels, expected in contract_startup_series():
        got = value(samples, name, **labels)
        if got is None:
            missing.append(f"{name}{labels or ''}")
        elif expected is not None and got != expected:
            wrong.append(f"{name}{labels or ''} = {got}, expected {expected}")
    assert not missing, f"missing series: {missing}"
    assert not wrong, wrong


def test_new_counters_and_histograms_exist_at_zero(startup):
    _, text, _, _ = startup
    _, samples = parse_strict(text)
    for counter in ADDITIONAL_COUNTERS:
        assert value(samples, counter) == 0, counter
    for histogram, (lowest, highest) in ADDITIONAL_HISTOGRAMS.items():
        assert value(samples, histogram + "_count") == 0, histogram
        assert value(samples, histogram + "_sum") == 0, histogram
        assert value(samples, histogram + "_bucket", le="+Inf") == 0, histogram
        bounds = finite_bounds(samples, histogram)
        assert (bounds[0], bounds[-1]) == (lowest, highest), (histogram, bounds)


def test_build_info_names_version_and_commit(startup):
    _, text, _, _ = startup
    _, samples = parse_strict(text)
    build_infos = {labels: v for (name, labels), v in samples.items()
                   if name == "wsvisor_build_info"}
    assert len(build_infos) == 1, build_infos
    (labels, v), = build_infos.items()
    labels = dict(labels)
    assert v == 1
    assert set(labels) == {"version", "commit"}, labels

    cp = run_cli("--version", config=False)
    assert cp.returncode == 0, cp
    assert cp.stdout.split() == ["wsvisor", labels["version"]], (cp.stdout, labels)

    commit = labels["commit"]
    assert commit, labels
    # A binary may be older than the checkout's HEAD, so the commit is only required to
    # be one of this repository's.
    if commit != "unknown" and shutil.which("git") and (REPO / ".git").exists():
        assert re.fullmatch(r"[0-9a-f]{12}", commit), commit
        cp = subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{commit}^{{commit}}"],
                            capture_output=True, timeout=10)
        assert cp.returncode == 0, f"commit {commit} is not in {REPO}: {cp.stderr!r}"


def test_process_series_are_the_server_process(startup):
    srv, text, launched_after, scraped_before = startup
    _, samples = parse_strict(text)

    start = value(samples, "process_start_time_seconds")
    # The boot time in /proc/stat is whole seconds: the reading may be up to 1 s early.
    assert launched_after - 1.5 <= start <= scraped_before + 0.5, (
        start, launched_after, scraped_before)

    assert value(samples, "process_max_fds") == nofile_limit()
    assert 0 < value(samples, "process_open_fds") <= value(samples, "process_max_fds")

    cpu = value(samples, "process_cpu_seconds_total")
    elapsed = scraped_before - launched_after
    assert 0 <= cpu <= elapsed * (os.cpu_count() or 1) + 0.5, (cpu, elapsed)
    # A counter: later scrapes never see less.
    assert scrape(srv.port)["process_cpu_seconds_total"] >= cpu
    assert scrape(srv.port)["process_start_time_seconds"] == start


def test_exposition_parses_with_prometheus_client(startup):
    parser = pytest.importorskip("prometheus_client.parser",
                                 reason="python3-prometheus-client not installed")
    _, text, _, _ = startup
    families = {f.name: f for f in parser.text_string_to_metric_families(text)}
    parsed = {(s.name, tuple(sorted(s.labels.items()))): s.value
              for f in families.values() for s in f.samples}
    # The two parsers agree on every sample.
    _, strict = parse_strict(text)
    assert parsed.keys() == strict.keys()
    for key, v in strict.items():
        assert parsed[key] == v or (math.isnan(v) and math.isnan(parsed[key])), key

    # prometheus_client names a counter family without its _total.
    for counter in ADDITIONAL_COUNTERS + ["wsvisor_connections_opened_total"]:
        assert families[counter[: -len("_total")]].type == "counter", counter
    assert families["process_cpu_seconds"].type == "counter"
    for histogram in HISTOGRAMS:
        assert families[histogram].type == "histogram", histogram
    for gauge in ("wsvisor_build_info", "process_start_time_seconds", "process_max_fds",
                  "wsvisor_ready"):
        assert families[gauge].type == "gauge", gauge


def test_exposition_passes_promtool_lint(startup):
    # Prometheus' own linter (names, units, suffixes, HELP); the Debian package
    # "prometheus" ships it, too large a dependency to install for this check alone.
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed")
    _, text, _, _ = startup
    cp = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                        text=True, timeout=30)
    assert cp.returncode == 0, f"promtool check metrics:\n{cp.stdout}{cp.stderr}"


_GOOD = ("# HELP a_total A.\n# TYPE a_total counter\na_total 1\n"
         "# HELP h H.\n# TYPE h histogram\n"
         'h_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 3.5\nh_count 2\n')


@pytest.mark.parametrize("text", [
    _GOOD.replace("a_total 1\n", "a_total 1 1700000000\n"),  # a timestamp
    _GOOD.replace("# TYPE a_total counter\n", ""),  # sample before TYPE
    _GOOD.replace("# HELP a_total A.\n", ""),  # no HELP
    _GOOD.replace("a_total", "a"),  # a counter not named *_total
    _GOOD.replace('h_bucket{le="+Inf"} 2', 'h_bucket{le="+Inf"} 0'),  # not cumulative
    _GOOD.replace("h_count 2", "h_count 3"),  # _count != +Inf bucket
    _GOOD.replace('h_bucket{le="+Inf"} 2\n', ""),  # no +Inf bucket
    _GOOD.replace('{le="1"}', '{le=1}'),  # unquoted label value
    _GOOD + "a_total 2\n",  # the same sample twice, and a family split
    _GOOD.rstrip("\n"),  # no final newline
    _GOOD.replace("a_total 1", "a_total one"),  # not a number
])
def test_strict_parser_rejects(text):
    # The checks above are only as good as this parser: it must refuse each defect.
    with pytest.raises(AssertionError):
        parse_strict(text)


def test_strict_parser_accepts_valid_text():
    types, samples = parse_strict(_GOOD)
    assert types == {"a_total": "counter", "h": "histogram"}
    assert samples[("h_bucket", (("le", "+Inf"),))] == 2


def test_the_soft_open_file_limit_is_raised_to_the_hard_limit(tmp_path):
    """A platform's default soft RLIMIT_NOFILE (often 1024) would cap the server far
    below limits.max_connections: wsvisor lifts its soft limit to the hard one at start."""
    import resource

    from conftest import BIN, CONFIG, HOST, clean_env, free_port, http_get, scrape, wait_until

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard <= 1024:
        pytest.skip(f"hard RLIMIT_NOFILE {hard}: nothing to raise to")
    port = free_port()

    def low_soft_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))

    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen([str(BIN), "--config", str(CONFIG), "--set", f"server.host={HOST}",
                             "--set", f"server.port={port}"], env=clean_env(),
                            stdout=log, stderr=subprocess.STDOUT, preexec_fn=low_soft_limit)
    try:
        wait_until(lambda: http_get(port, "/health/ready").status == 200, 10, what="ready")
        assert scrape(port).get("process_max_fds") == hard
        text = (tmp_path / "server.log").read_text()
        assert "soft_before=1024" in text and f"soft={hard}" in text, text
    finally:
        proc.terminate()
        assert proc.wait(15) == 0
        log.close()
