#!/usr/bin/env python3
"""Observability: the metrics endpoint (GET /metrics, Prometheus text format),
"raidad -s status" and the access log, against the real daemon on 127.0.0.1.

The counters are checked to move by exactly the requests this script made;
promtool checks the exposition; a real Prometheus server (its own temporary
directory and free port, bounded wait) scrapes raidad and answers a query;
and the endpoint is abused (2000 idle connections, slowloris) while RAIDA
traffic must see no error and the master keeps supervising. Prints TAP.
"""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from raidatest import (  # noqa: E402
    RAIDAD, SRCDIR, Daemon, EchoProber, Skip, build_request, child_pids, diag, expect, free_port,
    parse_response, process_uid, read_until_eof, reload_daemon, render_config, run, tcp_connect,
    tcp_exchange, test, udp_exchange, udp_socket, wait_until, workdir,
)
from coinstest import ALL_PASS, CoinClient, make_data_dir, random_coins  # noqa: E402

LOG_RELOAD_REFUSED = r"reload refused, the old configuration keeps serving"
LOG_KILLED = r"worker \d+ exited on signal 9 \(Killed\)"
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


# --------------------------------------------------------------------------
# Helpers

def metrics_daemon(overrides=None, expect_log=()):
    mport = free_port()
    settings = {"metrics_listen": f"127.0.0.1:{mport}"}
    settings.update(overrides or {})
    d = Daemon(settings, expect_log=expect_log)
    d.metrics_port = mport
    return d


def http_get(port, path="/metrics", method="GET", host="127.0.0.1", source=None, timeout=10):
    """(status, headers, body) of one HTTP request to HOST:PORT."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout,
                                      source_address=(source, 0) if source else None)
    try:
        conn.request(method, path)
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read().decode()
    finally:
        conn.close()


def scrape(d):
    status, headers, body = http_get(d.metrics_port)
    expect(status == 200, f"GET /metrics answered {status}", body[:500])
    expect(headers.get("Content-Type", "").startswith("text/plain; version=0.0.4"),
           "content type", headers)
    return body


def parse(text):
    """{(name, frozenset of label pairs): value} of an exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        expect(m is not None, f"malformed sample line: {line!r}")
        labels = frozenset(LABEL.findall(m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before, after, name, **labels):
    return value(after, name, **labels) - value(before, name, **labels)


def workers_of(d):
    """The master's worker processes (not the metrics process)."""
    out = []
    for pid in child_pids(d.pid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                title = f.read().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        if "worker process" in title:
            out.append(pid)
    return sorted(out)


def metrics_pid_of(d):
    for pid in child_pids(d.pid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"metrics process" in f.read():
                    return pid
        except OSError:
            pass
    return None


def tcp_request(d, **kw):
    frame, _ = d.request(**kw)
    return parse_response(tcp_exchange(d.port, frame))


def udp_request(d, **kw):
    frame, _ = d.request(**kw)
    data = udp_exchange(d.port, frame)
    expect(data is not None, "UDP request not answered")
    return parse_response(data)


def check_histograms(samples):
    """Every histogram: buckets cumulative, +Inf == _count. Returns the
    number of series checked."""
    series = {}
    for (name, labels), v in samples.items():
        if name.endswith("_bucket"):
            le = dict(labels)["le"]
            rest = frozenset((k, x) for k, x in labels if k != "le")
            series.setdefault((name[:-7], rest), []).append(
                (float("inf") if le == "+Inf" else float(le), v))
    for (base, labels), buckets in series.items():
        buckets.sort()
        counts = [v for _, v in buckets]
        expect(counts == sorted(counts), f"{base}{dict(labels)} buckets not cumulative", buckets)
        expect(buckets[-1][0] == float("inf"), f"{base} has no +Inf bucket")
        count = samples.get((base + "_count", labels))
        expect(count == counts[-1], f"{base}{dict(labels)}: _count {count} != +Inf {counts[-1]}")
        expect((base + "_sum", labels) in samples, f"{base}{dict(labels)} has no _sum")
    return len(series)


# --------------------------------------------------------------------------
# Counters

@test(timeout=60)
def test_udp_datagrams_dropped_for_busy_slots_are_counted_so():
    """One pool thread and one request slot, echo on the pool: of a burst of datagrams, those
    that find the slot taken are dropped, and counted dropped_busy, not dropped_short."""
    with metrics_daemon({"worker_processes": 1, "worker_threads": 1, "mod_queue_size": 1,
                         "quick_commands_inline": False}) as d:
        d.echo_ok(udp=True)
        before = parse(scrape(d))
        frame, _ = build_request()
        with udp_socket(1.0) as s:
            for _ in range(200):
                s.sendto(frame, ("127.0.0.1", d.port))
        time.sleep(0.5)
        after = parse(scrape(d))
        busy = delta(before, after, "raidad_udp_datagrams_total", outcome="dropped_busy")
        short = delta(before, after, "raidad_udp_datagrams_total", outcome="dropped_short")
        diag(f"of 200 datagrams: {busy} dropped for busy slots")
        expect(busy > 0 and short == 0, f"dropped_busy {busy}, dropped_short {short}")


@test(timeout=120)
def test_counters_move_by_exactly_the_requests_made():
    n_tcp, n_udp, n_version, n_badcmd, n_badgroup_udp, n_short = 37, 23, 5, 3, 4, 2
    with metrics_daemon({"worker_processes": 2}) as d:
        wait_until(lambda: value(parse(scrape(d)), "raidad_workers") == 2, 5)
        before = parse(scrape(d))
        for _ in range(n_tcp):
            d.echo_ok()
        for _ in range(n_udp):
            d.echo_ok(udp=True)
        for _ in range(n_version):
            expect(tcp_request(d, command=1).status == 250, "version over TCP")
        for _ in range(n_badcmd):
            expect(tcp_request(d, command=9).status == 6, "an unknown command answers 6")
        for _ in range(n_badgroup_udp):
            expect(udp_request(d, group=7).status == 5, "an unknown group answers 5")
        with udp_socket(1.0) as s:
            for _ in range(n_short):
                s.sendto(b"\x01" * 10, ("127.0.0.1", d.port))
        wait_until(lambda: delta(before, parse(scrape(d)), "raidad_udp_datagrams_total",
                                 outcome="dropped_short") >= n_short, 5)
        after = parse(scrape(d))

        def req(t, g, c, st):
            return delta(before, after, "raidad_requests_total", transport=t, group=g,
                         command=c, status=st)
        want = {
            ("tcp", "0", "echo", "250"): n_tcp, ("udp", "0", "echo", "250"): n_udp,
            ("tcp", "0", "version", "250"): n_version, ("tcp", "none", "none", "6"): n_badcmd,
            ("udp", "none", "none", "5"): n_badgroup_udp,
        }
        for key, n in want.items():
            expect(req(*key) == n, f"requests_total{key} moved by {req(*key)}, expected {n}")
        total = sum(v for (name, _), v in after.items() if name == "raidad_requests_total") - \
            sum(v for (name, _), v in before.items() if name == "raidad_requests_total")
        expect(total == sum(want.values()), f"requests_total moved by {total} in all")
        expect(delta(before, after, "raidad_connections_accepted_total")
               == n_tcp + n_version + n_badcmd, "connections accepted")
        expect(delta(before, after, "raidad_udp_datagrams_total", outcome="answered")
               == n_udp + n_badgroup_udp, "UDP answered")
        expect(delta(before, after, "raidad_udp_datagrams_total", outcome="dropped_short")
               == n_short, "UDP dropped_short")
        for t, g, n in (("tcp", "0", n_tcp + n_version), ("tcp", "none", n_badcmd),
                        ("udp", "0", n_udp), ("udp", "none", n_badgroup_udp)):
            got = delta(before, after, "raidad_request_duration_seconds_count", transport=t, group=g)
            expect(got == n, f"duration histogram {t}/{g}: _count moved by {got}, expected {n}")
        series = check_histograms(after)
        expect(series >= 5, f"only {series} histogram series")
        expect(value(after, "raidad_workers") == 2, "raidad_workers")
        expect(value(after, "raidad_config_generation") == 1, "generation")
        expect(value(after, "raidad_pool_threads") == 2 * 2, "pool threads: 2 workers x 2",
               value(after, "raidad_pool_threads"))
        expect(wait_until(lambda: value(parse(scrape(d)), "raidad_connections_open") == 0, 5),
               "connections_open back to 0")
        expect(value(after, "raidad_build_info", version="0.1.0", build="20261125") == 1,
               "build_info")
        expect(abs(value(after, "process_start_time_seconds") - time.time()) < 120,
               "process_start_time_seconds")
        diag(f"{len(after)} samples, {series} histogram series")


@test(timeout=120)
def test_requests_through_the_pool_fill_the_pool_wait_histogram():
    with metrics_daemon({"quick_commands_inline": False}) as d:
        before = parse(scrape(d))
        for _ in range(20):
            d.echo_ok()
        after = parse(scrape(d))
        got = delta(before, after, "raidad_pool_wait_seconds_count")
        expect(got == 20, f"pool_wait _count moved by {got}, expected 20")
        check_histograms(after)


@test(timeout=60)
def test_exposition_passes_promtool():
    promtool = shutil.which("promtool")
    if promtool is None:
        raise Skip("promtool not installed (Debian package prometheus)")
    with metrics_daemon() as d:
        d.echo_ok()
        d.echo_ok(udp=True)
        tcp_request(d, command=9)
        text = scrape(d)
        p = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=30)
        expect(p.returncode == 0 and not p.stdout.strip() and not p.stderr.strip(),
               "promtool check metrics complained", p.stdout, p.stderr)
        for family in ("raidad_requests_total", "raidad_request_duration_seconds",
                       "raidad_pool_wait_seconds", "raidad_connections_accepted_total",
                       "raidad_connections_open", "raidad_connections_refused_total",
                       "raidad_timeouts_total", "raidad_udp_datagrams_total",
                       "raidad_rate_limited_total", "raidad_pool_threads",
                       "raidad_pool_busy_threads", "raidad_pool_queue_length",
                       "raidad_mod_queue_length", "raidad_reloads_total",
                       "raidad_config_generation", "raidad_worker_restarts_total",
                       "raidad_workers", "raidad_build_info", "process_start_time_seconds",
                       "raidad_store_sync_duration_seconds", "raidad_store_commit_wait_seconds",
                       "raidad_store_pages_mapped"):
            expect(f"# HELP {family} " in text and f"# TYPE {family} " in text,
                   f"{family}: no HELP or TYPE")


@test(timeout=120)
def test_coin_store_syncs_waits_and_pages():
    """Each pown's answer waited for a journal sync: the wait histogram
    counts every pown, the sync histogram at least one sync and at most
    one per pown (group commit may share them), and the pages the two
    workers mapped are counted."""
    root = os.path.join(workdir(), "metrics-coins")
    spec = [(1, sn) for sn in range(20)] + [(3, 2000)]
    ans = make_data_dir(root, random_coins(spec))
    with metrics_daemon({"worker_processes": 2, "data_dir": root}) as d:
        before = parse(scrape(d))
        c = CoinClient(d)
        for (den, sn), an in ans.items():
            expect(c.pown([(den, sn, an, os.urandom(16))]).status == ALL_PASS, f"pown {den}/{sn}")
        after = parse(scrape(d))
        waits = delta(before, after, "raidad_store_commit_wait_seconds_count")
        syncs = delta(before, after, "raidad_store_sync_duration_seconds_count")
        diag(f"{len(ans)} powns: {waits:.0f} answers waited for {syncs:.0f} syncs; "
             f"{value(after, 'raidad_store_pages_mapped'):.0f} pages mapped")
        expect(waits == len(ans), f"commit wait _count moved by {waits}, not {len(ans)}")
        expect(1 <= syncs <= len(ans), f"sync _count moved by {syncs} for {len(ans)} powns")
        expect(delta(before, after, "raidad_store_sync_duration_seconds_sum") > 0, "no sync time")
        expect(value(after, "raidad_store_pages_mapped") >= 2,
               "two pages (denominations 1 and 3) were used: fewer are counted mapped")
        check_histograms(after)


@test(timeout=60)
def test_rate_limited_clients_are_counted():
    with metrics_daemon({"rate_limit": 5, "rate_limit_burst": 5}) as d:
        before = parse(scrape(d))
        limited_udp = sum(udp_request(d).status == 160 for _ in range(15))
        limited_tcp = sum(tcp_request(d).status == 160 for _ in range(15))
        after = parse(scrape(d))
        diag(f"rate limited: {limited_udp} over UDP, {limited_tcp} over TCP")
        expect(limited_udp > 0 and limited_tcp > 0, "the rate limit refused nothing")
        expect(delta(before, after, "raidad_rate_limited_total", transport="udp") == limited_udp,
               "rate_limited udp")
        expect(delta(before, after, "raidad_rate_limited_total", transport="tcp") == limited_tcp,
               "rate_limited tcp")
        expect(delta(before, after, "raidad_udp_datagrams_total", outcome="dropped_rate")
               == limited_udp, "udp dropped_rate")
        # Refused before its header is read (so that bad requests spend the
        # budget too): no command is known for it.
        expect(delta(before, after, "raidad_requests_total", transport="tcp", group="none",
                     command="none", status="160") == limited_tcp, "requests_total status 160")


@test(expect_log=[LOG_RELOAD_REFUSED, LOG_KILLED], timeout=120)
def test_counters_survive_reloads_and_a_killed_worker():
    with metrics_daemon({"worker_processes": 2}) as d:
        for _ in range(10):
            d.echo_ok()
        before = parse(scrape(d))
        reload_daemon(d, {"raida_id": 0})
        for _ in range(10):
            d.echo_ok()
        mid = parse(scrape(d))
        expect(delta(before, mid, "raidad_reloads_total", result="ok") == 1, "reloads ok")
        expect(value(mid, "raidad_config_generation") == 2, "generation after a reload")
        expect(delta(before, mid, "raidad_requests_total", transport="tcp", group="0",
                     command="echo", status="250") == 10, "echo counted across the reload")
        # A refused reload.
        with open(d.config_path, "w") as f:
            f.write(render_config(d.settings) + "worker_threads = 0;\n")
        d.proc.send_signal(signal.SIGHUP)
        expect(wait_until(lambda: value(parse(scrape(d)), "raidad_reloads_total",
                                        result="failed") == 1, 10), "reloads failed")
        with open(d.config_path, "w") as f:
            f.write(render_config(d.settings))
        # A killed worker: replaced, counted, and nothing counted is lost.
        workers = wait_until(lambda: len(workers_of(d)) == 2 and workers_of(d), 10)
        victim = workers[0]
        os.kill(victim, signal.SIGKILL)
        t0 = time.monotonic()
        new = wait_until(lambda: [p for p in workers_of(d) if p not in workers], 2.0, 0.01)
        expect(new, "no replacement worker within 2 s")
        diag(f"worker {victim} replaced by {new} after {time.monotonic() - t0:.3f} s")
        wait_until(lambda: value(parse(scrape(d)), "raidad_workers") == 2, 5)
        after = parse(scrape(d))
        expect(delta(mid, after, "raidad_worker_restarts_total", cause="signal") == 1,
               "worker_restarts signal")
        expect(delta(before, after, "raidad_requests_total", transport="tcp", group="0",
                     command="echo", status="250") == 10, "counters went back after the kill")
        for _ in range(5):
            d.echo_ok()
        last = parse(scrape(d))
        expect(delta(before, last, "raidad_requests_total", transport="tcp", group="0",
                     command="echo", status="250") == 15, "counting after the kill")
        d.stop(expect_log=[LOG_RELOAD_REFUSED, LOG_KILLED])


# --------------------------------------------------------------------------
# HTTP and access

@test(timeout=60)
def test_only_get_metrics_is_served():
    with metrics_daemon() as d:
        status, _, body = http_get(d.metrics_port, "/")
        expect(status == 404, f"GET / answered {status}")
        status, _, _ = http_get(d.metrics_port, "/metrics/x")
        expect(status == 404, f"GET /metrics/x answered {status}")
        status, headers, _ = http_get(d.metrics_port, "/metrics", method="POST")
        expect(status == 405 and "GET" in headers.get("Allow", ""), f"POST answered {status}",
               headers)
        status, _, body = http_get(d.metrics_port, "/metrics", method="HEAD")
        expect(status == 200 and body == "", f"HEAD answered {status}")
        # Garbage instead of HTTP: the endpoint stays up, the daemon too.
        with socket.create_connection(("127.0.0.1", d.metrics_port), timeout=5) as s:
            s.sendall(os.urandom(300) + b"\r\n\r\n")
            read_until_eof(s, 10)
        scrape(d)
        d.echo_ok()


@test(timeout=60)
def test_metrics_allow_limits_the_clients():
    with metrics_daemon({"metrics_allow": ["127.0.0.2/32", "::1"]}) as d:
        status, _, _ = http_get(d.metrics_port, source="127.0.0.2")
        expect(status == 200, f"an allowed client got {status}")
        try:
            status, _, _ = http_get(d.metrics_port, source="127.0.0.1")
        except (ConnectionError, http.client.HTTPException, socket.timeout) as e:
            diag(f"127.0.0.1 refused: {type(e).__name__}")
        else:
            raise AssertionError(f"127.0.0.1 is not in metrics_allow but got {status}")


@test(timeout=60)
def test_bad_metrics_settings_name_the_file_and_line():
    path = os.path.join(workdir(), "bad-metrics.conf")
    for text, want in (('metrics_listen = "127.0.0.1";\n', "metrics_listen '127.0.0.1'"),
                       ('metrics_allow = ["10.0.0.0/33"];\n', "metrics_allow '10.0.0.0/33'"),
                       ('access_log_format = "xml";\n', "access_log_format 'xml'")):
        with open(path, "w") as f:
            f.write(text)
        p = subprocess.run([RAIDAD, "-t", "-c", path], capture_output=True, text=True, timeout=30)
        expect(p.returncode != 0 and f"{path}:1: " in p.stderr and want in p.stderr,
               "bad setting not reported with file:line", text, p.stderr)


@test(timeout=240)
def test_a_real_prometheus_scrapes_raidad():
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        raise Skip("prometheus not installed (Debian package prometheus)")
    with metrics_daemon() as d:
        for _ in range(7):
            d.echo_ok()
        exported = set(re.findall(r"^# TYPE (\S+) ", scrape(d), re.M))
        pdir = tempfile.mkdtemp(prefix="prom-", dir=workdir())
        pport = free_port()
        with open(os.path.join(pdir, "prometheus.yml"), "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                    "scrape_configs:\n  - job_name: raidad\n    static_configs:\n"
                    f"      - targets: ['127.0.0.1:{d.metrics_port}']\n")
        log = open(os.path.join(pdir, "prometheus.log"), "wb")
        proc = subprocess.Popen(
            [prometheus, f"--config.file={pdir}/prometheus.yml",
             f"--storage.tsdb.path={pdir}/data", f"--web.listen-address=127.0.0.1:{pport}",
             f"--web.console.templates={pdir}", f"--web.console.libraries={pdir}"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        try:
            query = urllib.parse.urlencode({
                "query": 'raidad_requests_total{transport="tcp",command="echo",status="250"}'})
            url = f"http://127.0.0.1:{pport}/api/v1/query?{query}"
            answer = None
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    with urllib.request.urlopen(url, timeout=5) as r:
                        answer = json.load(r)
                    if answer["data"]["result"]:
                        break
                except (OSError, ValueError, KeyError):
                    pass
                time.sleep(1)
            expect(proc.poll() is None, "prometheus exited", open(log.name).read()[-2000:])
            expect(answer is not None and answer.get("status") == "success"
                   and answer["data"]["result"], "no answer for raidad_requests_total", answer)
            sample = answer["data"]["result"][0]
            diag(f"prometheus answered {sample['metric']} = {sample['value'][1]}")
            expect(float(sample["value"][1]) == 7, "prometheus saw another count", sample)
            # Every query of the shipped Grafana dashboard is valid PromQL over
            # series this raidad exports.
            with open(os.path.join(SRCDIR, "contrib", "grafana-raidad.json")) as f:
                dash = json.load(f)
            exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
            for expr in exprs:
                q = (expr.replace("$__rate_interval", "1m").replace("$__range", "5m")
                     .replace("$instance", ".*"))
                url = f"http://127.0.0.1:{pport}/api/v1/query?" + urllib.parse.urlencode({"query": q})
                with urllib.request.urlopen(url, timeout=10) as r:
                    res = json.load(r)
                expect(res.get("status") == "success", f"dashboard query failed: {q}", res)
                series = re.findall(r"\b(raidad_\w+|process_start_time_seconds)\b", expr)
                expect(all(re.sub(r"_(bucket|count|sum)$", "", m) in exported for m in series),
                       f"dashboard query names an unknown family: {expr}")
            diag(f"{len(exprs)} dashboard queries answered")
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


# --------------------------------------------------------------------------
# Abuse of the endpoint

class Slowloris(threading.Thread):
    """Connections to the metrics port that send a request a byte at a time."""

    def __init__(self, port, conns=20, interval=0.3):
        super().__init__(daemon=True)
        self.port, self.conns, self.interval = port, conns, interval
        self.stop_event = threading.Event()
        self.sent = 0
        self.connected = 0

    def run(self):
        socks = []
        # Two from each address: within metrics_connections_per_ip.
        for i in range(self.conns):
            try:
                socks.append(socket.create_connection(("127.0.0.1", self.port), timeout=5,
                                                      source_address=(f"127.0.0.{3 + i // 2}", 0)))
            except OSError:
                pass
        self.connected = len(socks)
        line = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 10000
        i = 0
        while not self.stop_event.wait(self.interval) and i < len(line):
            for s in list(socks):
                try:
                    s.send(line[i:i + 1])
                    self.sent += 1
                except OSError:
                    socks.remove(s)
                    s.close()
            i += 1
        for s in socks:
            s.close()


class Load(threading.Thread):
    """TCP and UDP echo requests, one after the other, counting errors."""

    def __init__(self, d, limit=200000):
        super().__init__(daemon=True)
        self.d, self.limit = d, limit
        self.stop_event = threading.Event()
        self.ok, self.errors = 0, []

    def run(self):
        n = 0
        while not self.stop_event.is_set() and n < self.limit:
            n += 1
            try:
                self.d.echo_ok(udp=n % 2 == 0)
                self.ok += 1
            except Exception as e:  # noqa: BLE001 - counted and reported
                self.errors.append(f"{type(e).__name__}: {e}")


@test(expect_log=[LOG_KILLED], timeout=180)
def test_idle_and_slowloris_clients_on_the_endpoint_do_not_disturb_raida_traffic():
    with metrics_daemon({"worker_processes": 2, "metrics_timeout": 3}) as d:
        slow = Slowloris(d.metrics_port)
        slow.start()
        wait_until(lambda: slow.sent > 0, 10)
        idle = []
        for _ in range(2000):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", d.metrics_port))
            idle.append(s)
        time.sleep(1)
        connected = sum(s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0 for s in idle)
        diag(f"{connected} of {len(idle)} idle connections established or pending")
        loads = [Load(d), Load(d)]
        for ld in loads:
            ld.start()
        prober = EchoProber(d).start()
        try:
            time.sleep(8)
            for ld in loads:
                ld.stop_event.set()
            for ld in loads:
                ld.join(30)
            ok = sum(ld.ok for ld in loads)
            errors = [e for ld in loads for e in ld.errors]
            diag(f"under abuse: {ok} echo requests answered, {len(errors)} errors; "
                 f"slowloris: {slow.connected} connections sent {slow.sent} bytes")
            expect(not errors, "RAIDA traffic failed under abuse of the endpoint", errors[:5])
            expect(ok > 100, f"only {ok} requests answered in 8 s")
            prober.check_since((0, 0))
            # The master still supervises: a killed worker is back within 2 s.
            workers = workers_of(d)
            os.kill(workers[0], signal.SIGKILL)
            new = wait_until(lambda: [p for p in workers_of(d) if p not in workers], 2.0, 0.01)
            expect(new, "no replacement worker within 2 s while the endpoint is abused")
            expect(metrics_pid_of(d) is not None, "the metrics process is gone")
        finally:
            prober.stop()
            slow.stop_event.set()
            slow.join(10)
            for s in idle:
                s.close()
        # Once the abusers leave, the endpoint answers again.
        got = wait_until(lambda: _scrape_quietly(d), 30, 0.5)
        expect(got, "the endpoint did not recover after the abuse")
        d.echo_ok()
        d.stop(expect_log=[LOG_KILLED])


def _scrape_quietly(d):
    try:
        return http_get(d.metrics_port, timeout=3)[0] == 200
    except (OSError, http.client.HTTPException):
        return False


@test(timeout=60)
def test_a_killed_metrics_process_is_restarted():
    expect_log = [r"the metrics process \d+ exited on signal 9: restarting it"]
    with metrics_daemon(expect_log=expect_log) as d:
        pid = wait_until(lambda: metrics_pid_of(d), 5)
        expect(pid, "no metrics process")
        os.kill(pid, signal.SIGKILL)
        new = wait_until(lambda: (metrics_pid_of(d) or pid) != pid and metrics_pid_of(d), 5)
        expect(new, "the metrics process was not restarted")
        expect(wait_until(lambda: _scrape_quietly(d), 5), "no scrape after the restart")
        d.echo_ok()


def holds(pid, path):
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}") == path
                   for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


@test(timeout=90)
def test_unprivileged_metrics_process_on_ipv4_and_ipv6_and_log_reopen():
    """The metrics process and the workers run as nobody; the endpoint is
    served on an IPv4 and an IPv6 address; SIGUSR1 hands the reopened error
    and access logs (root's, in a folder nobody cannot enter) to them."""
    import pwd
    if os.geteuid() != 0:
        raise Skip("needs root to start the processes as another user")
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        raise Skip("no user 'nobody' here")
    p4, p6 = free_port(), free_port()
    d = Daemon({"worker_processes": 2, "user": "nobody",
                "metrics_listen": [f"127.0.0.1:{p4}", f"[::1]:{p6}"],
                "access_log_flush_ms": 50})
    access = os.path.join(d.dir, "access.log")
    d.settings.update({"error_log": d.log_path, "access_log": access})
    with open(d.config_path, "w") as f:
        f.write(render_config(d.settings))
    with d:
        mpid = wait_until(lambda: metrics_pid_of(d), 5)
        workers = wait_until(lambda: len(workers_of(d)) == 2 and workers_of(d), 5)
        expect(mpid and workers, "no metrics process or workers")
        uids = {pid: process_uid(pid) for pid in [mpid] + workers}
        expect(all(u == nobody.pw_uid for u in uids.values()), f"not all run as nobody: {uids}")
        d.metrics_port = p4
        d.echo_ok()
        expect(value(parse(scrape(d)), "raidad_requests_total", transport="tcp", group="0",
                     command="echo", status="250") == 1, "IPv4 endpoint")
        status, _, body = http_get(p6, host="::1")
        expect(status == 200 and "raidad_requests_total{" in body, f"IPv6 endpoint: {status}")
        read_lines(access, 1)
        os.rename(d.log_path, d.log_path + ".1")
        os.rename(access, access + ".1")
        d.proc.send_signal(signal.SIGUSR1)
        d._log_checked = 0
        expect(wait_until(lambda: all(holds(p, d.log_path) for p in [mpid] + workers), 10),
               "not every process holds the reopened error log")
        expect(wait_until(lambda: all(holds(p, access) for p in workers), 10),
               "not every worker holds the reopened access log")
        d.echo_ok()
        expect(len(read_lines(access, 1)) == 1, "the echo is not in the reopened access log")


# --------------------------------------------------------------------------
# raidad -s status

def status_cmd(d, config=None):
    return subprocess.run([RAIDAD, "-c", config or d.config_path, "-s", "status"],
                          capture_output=True, text=True, timeout=30)


@test(timeout=90)
def test_status_of_a_running_daemon_and_of_none():
    d = metrics_daemon({"worker_processes": 2})
    with d:
        for _ in range(3):
            d.echo_ok()
        wait_until(lambda: status_cmd(d).returncode == 0, 5)
        p = status_cmd(d)
        diag(p.stdout)
        expect(p.returncode == 0, f"status exit {p.returncode}", p.stdout, p.stderr)
        expect(re.search(rf"^master pid: +{d.pid}$", p.stdout, re.M), "master pid", p.stdout)
        expect(re.search(r"^uptime: +\d+", p.stdout, re.M), "uptime", p.stdout)
        expect(re.search(r"^generation: +1$", p.stdout, re.M), "generation", p.stdout)
        expect("last reload:      none since the start" in p.stdout, "last reload", p.stdout)
        workers = workers_of(d)
        rows = {int(m.group(1)): (m.group(2), int(m.group(3)), int(m.group(4)))
                for m in re.finditer(r"^  (\d+) +1 +(\w+) +(\d+) +(\d+)$", p.stdout, re.M)}
        expect(sorted(rows) == workers, f"workers {sorted(rows)} != {workers}", p.stdout)
        expect(all(r[0] == "serving" for r in rows.values()), "states", p.stdout)
        expect(sum(r[2] for r in rows.values()) >= 3, "requests per worker", p.stdout)
        reload_daemon(d, {"raida_id": 0})
        wait_until(lambda: "generation:       2" in status_cmd(d).stdout, 5)
        p = status_cmd(d)
        expect(p.returncode == 0 and re.search(r"^last reload: +ok at ", p.stdout, re.M)
               and "generation:       2" in p.stdout, "status after a reload", p.stdout)
    p = status_cmd(d)
    expect(p.returncode == 3 and "not running" in p.stdout, "status with no daemon",
           p.returncode, p.stdout, p.stderr)
    diag(p.stdout.strip())


@test(timeout=60)
def test_status_of_a_killed_master_whose_pid_is_taken():
    """After kill -9 the pid file and the status record stay behind, and the
    master's pid may go to another process: status finds the master as
    "raidad -s" does (whoever holds the pid file's lock), so it says none
    runs (3), not "running, healthy" from the leftover record (found by
    review: it asked kill(pid, 0))."""
    d = metrics_daemon({"worker_processes": 1})
    d.start()
    wait_until(lambda: status_cmd(d).returncode == 0, 5)
    for pid in [d.pid] + child_pids(d.pid):
        os.kill(pid, signal.SIGKILL)
    d.kill()
    pid_file = d.settings["pid_file"]
    record = re.sub(r"\.pid$", "", pid_file) + ".status"
    other = subprocess.Popen(["sleep", "30"])
    try:
        with open(pid_file, "w") as f:
            f.write(f"{other.pid}\n")
        with open(record) as f:
            text = f.read()
        text = re.sub(r"(?m)^master_pid \d+$", f"master_pid {other.pid}", text)
        text = re.sub(r"(?m)^updated \d+$", f"updated {int(time.time())}", text)
        with open(record, "w") as f:
            f.write(text)
        p = status_cmd(d)
        expect(p.returncode == 3 and "stale" in p.stdout, "status of a dead master",
               p.returncode, p.stdout, p.stderr)
    finally:
        other.kill()
        other.wait()


# --------------------------------------------------------------------------
# The access log

PLAIN = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) (\S+):(\d+) (tcp|udp) (\S+) "
                   r"(\d+) (\d+) (\d+) (\d+)$")


def own_tcp(d, **kw):
    """A TCP request; (local port, response)."""
    frame, _ = d.request(**kw)
    with tcp_connect(d.port) as s:
        port = s.getsockname()[1]
        s.sendall(frame)
        res = read_until_eof(s)
    return port, parse_response(res.data)


def own_udp(d, **kw):
    frame, _ = d.request(**kw)
    with udp_socket(5) as s:
        s.bind(("127.0.0.1", 0))
        s.sendto(frame, ("127.0.0.1", d.port))
        data, _ = s.recvfrom(65536)
        return s.getsockname()[1], parse_response(data)


def make_traffic(d):
    """Requests whose log lines are known: [(port, transport, what, status, in, out)]."""
    made = []
    for _ in range(3):
        port, r = own_tcp(d)
        made.append((port, "tcp", "0/echo", r.status, 50, len(r.raw)))
    for _ in range(2):
        port, r = own_udp(d, command=1)
        made.append((port, "udp", "0/version", r.status, 50, len(r.raw)))
    port, r = own_tcp(d, command=9)
    made.append((port, "tcp", "-", r.status, 50, len(r.raw)))
    return made


def read_lines(path, n, timeout=5):
    def lines():
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            return []
        return text.splitlines() if text.count("\n") >= n else []
    got = wait_until(lines, timeout)
    expect(got, f"{path}: fewer than {n} lines within {timeout} s")
    return got


def check_time(stamp):
    t = time.mktime(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    expect(abs(t - time.time()) < 120, f"time {stamp} is not now")


@test(timeout=60)
def test_access_log_plain_lines_field_by_field_and_reopen():
    path = os.path.join(workdir(), "access-plain.log")
    with Daemon({"access_log": path, "access_log_flush_ms": 50}) as d:
        made = make_traffic(d)
        lines = read_lines(path, len(made))
        expect(len(lines) == len(made), f"{len(lines)} lines for {len(made)} requests", lines)
        by_port = {}
        for line in lines:
            m = PLAIN.match(line)
            expect(m is not None, f"line does not match the plain format: {line!r}")
            by_port[(int(m.group(3)), m.group(4))] = m
        for port, transport, what, status, nin, nout in made:
            m = by_port.get((port, transport))
            expect(m is not None, f"no line for {transport} port {port}", lines)
            check_time(m.group(1))
            expect(m.group(2) == "127.0.0.1", "client address", m.group(0))
            expect(m.group(5) == what, f"group/command {m.group(5)} != {what}", m.group(0))
            expect(int(m.group(6)) == status, "status", m.group(0))
            expect(int(m.group(7)) == nin and int(m.group(8)) == nout,
                   f"bytes {m.group(7)}/{m.group(8)} != {nin}/{nout}", m.group(0))
            expect(0 <= int(m.group(9)) < 1000000, "duration", m.group(0))
        diag(lines[0])
        # logrotate: move the file, SIGUSR1, and the next lines go to a new one.
        os.rename(path, path + ".1")
        d.proc.send_signal(signal.SIGUSR1)
        expect(wait_until(lambda: os.path.exists(path), 5), "the master did not reopen the file")
        time.sleep(0.3)     # the descriptor reaches the workers over their channel
        port, _ = own_tcp(d)
        new = read_lines(path, 1)
        expect(len(new) == 1 and f":{port} tcp 0/echo 250 " in new[0], "after the reopen", new)
        with open(path + ".1") as f:
            expect(len(f.read().splitlines()) == len(made), "old file grew after the reopen")


@test(timeout=60)
def test_access_log_json_lines_field_by_field():
    path = os.path.join(workdir(), "access-json.log")
    with Daemon({"access_log": path, "access_log_format": "json", "worker_processes": 2,
                 "access_log_flush_ms": 50}) as d:
        made = make_traffic(d)
        lines = read_lines(path, len(made))
        expect(len(lines) == len(made), f"{len(lines)} lines for {len(made)} requests", lines)
        by_port = {}
        for line in lines:
            rec = json.loads(line)
            expect(set(rec) == {"time", "client", "port", "transport", "group", "command",
                                "status", "bytes_in", "bytes_out", "duration_us"},
                   "json keys", rec)
            by_port[(rec["port"], rec["transport"])] = rec
        for port, transport, what, status, nin, nout in made:
            rec = by_port.get((port, transport))
            expect(rec is not None, f"no record for {transport} port {port}", lines)
            check_time(rec["time"])
            group, command = (None, None) if what == "-" else what.split("/")
            expect(rec["client"] == "127.0.0.1", "client", rec)
            expect(rec["group"] == (None if group is None else int(group))
                   and rec["command"] == command, "group/command", rec)
            expect(rec["status"] == status and rec["bytes_in"] == nin
                   and rec["bytes_out"] == nout, "status and bytes", rec)
            expect(isinstance(rec["duration_us"], int) and 0 <= rec["duration_us"] < 1000000,
                   "duration", rec)
        diag(lines[0])


if __name__ == "__main__":
    run()
