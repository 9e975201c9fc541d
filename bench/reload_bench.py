#!/usr/bin/python3
"""
reload_bench.py: what a policy reload costs the traffic (not a test; run by hand).

    /usr/bin/python3 bench/reload_bench.py [--threads 2] [--conns 20] [--rate 8000] ...

Starts three memcached servers and ./luagent (-vv, for its swap log lines) on
127.0.0.1 free ports, with policy A (every key -> pool on S1,S2). Load
processes (no GIL between them) drive --conns client connections, one request
outstanding each, 10 gets to 1 set on their own keys, paced to --rate
requests/s in total (0: as fast as they can), and time every request. The run:

    warm-up | steady window | reload window (SIGHUP every --interval s,
    alternating policy A and B = pool on S3) | steady window

and the report gives per-window latency percentiles, errors, and for each
reload the time from SIGHUP to "every worker answers with the new
generation", seen from the client (one probe connection per worker, polled
with `stats` in a tight loop) and from luagent's own log (SIGHUP -> `reload:`
line = load+compile+self-test in fresh VMs on the main thread; that line ->
last `worker N: now on generation` line = hand-off to the workers).
Everything started is stopped by PID at the end.
"""
import argparse
import array
import datetime
import multiprocessing
import os
import re
import selectors
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
try:
    # the integration fixtures' process classes (start, log capture, stop by PID)
    from conftest import LUAGENT, Luagent, Memcached, free_port  # noqa: E402
except ImportError as e:
    sys.exit("reload_bench: %s: run it with /usr/bin/python3 (tests/integration/conftest.py "
             "needs pytest)" % e)

HOST = "127.0.0.1"
VALUE = b"x" * 100


def policy(name, servers):
    return ('local lg = require "luagent"\n'
            'local p = lg.pool{ name = "%s", servers = { %s } }\n'
            'return lg.policy{ route = p, tests = { { "get k", "%s" } } }\n'
            % (name, ", ".join('"%s:%d"' % (HOST, s.port) for s in servers), name))


def write_policy(path, text):
    tmp = str(path) + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, str(path))


# ---------------------------------------------------------------------------
# Load process: a selectors loop over its share of the connections
# ---------------------------------------------------------------------------

class Conn:
    __slots__ = ("sock", "key_base", "n", "kind", "t_send", "buf", "next_at")

    def __init__(self, addr, key_base):
        self.sock = socket.create_connection(addr)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.key_base = key_base
        self.n = 0
        self.kind = None
        self.buf = bytearray()
        self.next_at = 0.0


def load_proc(addr, nconn, first_id, rate_per_conn, t_start, t_end, out_q):
    """Run until t_end (monotonic); send back (t_send, latency, is_error) arrays."""
    sel = selectors.DefaultSelector()
    conns = [Conn(addr, b"bench:%d:" % (first_id + i)) for i in range(nconn)]
    t_sent = array.array("d")
    lat = array.array("d")
    errs = array.array("b")
    closed = 0
    error_samples = []
    period = 1.0 / rate_per_conn if rate_per_conn > 0 else 0.0

    def send(c, now):
        key = c.key_base + b"%d" % (c.n % 100)
        if c.n % 11 == 10:
            c.kind = "set"
            req = b"set %s 0 0 %d\r\n%s\r\n" % (key, len(VALUE), VALUE)
        else:
            c.kind = "get"
            req = b"get %s\r\n" % key
        c.n += 1
        c.t_send = time.monotonic()
        c.sock.send(req)            # tiny request: fits the socket buffer

    while time.monotonic() < t_start:
        time.sleep(0.001)
    now = time.monotonic()
    for i, c in enumerate(conns):
        c.next_at = now + (period * i / nconn if period else 0.0)
        sel.register(c.sock, selectors.EVENT_READ, c)
    idle = list(conns)              # connections waiting for their next send time
    while True:
        now = time.monotonic()
        if now >= t_end:
            break
        still = []
        for c in idle:
            if c.next_at <= now:
                send(c, now)
            else:
                still.append(c)
        idle = still
        timeout = 0.05
        if idle:
            timeout = max(0.0, min(c.next_at for c in idle) - time.monotonic())
        for sk, _ in sel.select(timeout):
            c = sk.data
            try:
                chunk = c.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                closed += 1
                sel.unregister(c.sock)
                continue
            c.buf += chunk
            if c.kind == "set":
                done = c.buf.endswith(b"\r\n")
                ok = bytes(c.buf) == b"STORED\r\n"
            else:
                done = c.buf.endswith(b"END\r\n") or (
                    c.buf.endswith(b"\r\n") and (c.buf.startswith(b"SERVER_ERROR")
                                                 or c.buf.startswith(b"ERROR")
                                                 or c.buf.startswith(b"CLIENT_ERROR")))
                ok = c.buf.endswith(b"END\r\n") and (
                    c.buf == b"END\r\n" or c.buf.startswith(b"VALUE "))
            if not done:
                continue
            t = time.monotonic()
            t_sent.append(c.t_send)
            lat.append(t - c.t_send)
            errs.append(0 if ok else 1)
            if not ok and len(error_samples) < 5:
                error_samples.append(bytes(c.buf[:200]))
            c.buf.clear()
            if period:
                c.next_at = max(c.next_at + period, t)    # late: no burst to catch up
                idle.append(c)
            else:
                send(c, t)
    for c in conns:
        c.sock.close()
    out_q.put((t_sent.tobytes(), lat.tobytes(), errs.tobytes(), closed, error_samples))


# ---------------------------------------------------------------------------
# Probes: one stats connection per worker
# ---------------------------------------------------------------------------

class Probe:
    def __init__(self, addr):
        self.sock = socket.create_connection(addr)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def generation(self):
        self.sock.sendall(b"stats\r\n")
        buf = bytearray()
        while not buf.endswith(b"END\r\n"):
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("probe connection closed")
            buf += chunk
        m = re.search(rb"STAT config_generation (\d+)\r\n", buf)
        return int(m.group(1))

    def close(self):
        self.sock.close()


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def log_times(log_text):
    """{generation: (reload line epoch, [worker swap epochs])} from luagent's log."""
    out = {}
    stamp = r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) \[\d+\] \w+: "
    for m in re.finditer(stamp + r"reload: generation (\d+) ", log_text):
        out.setdefault(int(m.group(2)), [None, []])[0] = _epoch(m.group(1))
    for m in re.finditer(stamp + r"worker \d+: now on generation (\d+)", log_text):
        out.setdefault(int(m.group(2)), [None, []])[1].append(_epoch(m.group(1)))
    return out


def _epoch(text):
    return datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f").timestamp()


def pct(sorted_vals, p):
    if not sorted_vals:
        return float("nan")
    i = min(len(sorted_vals) - 1, max(0, int(round(p / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[i]


def ms(x):
    return "%7.3f" % (x * 1000.0)


# ---------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="luagent -t (default 2)")
    ap.add_argument("--conns", type=int, default=20, help="client connections (default 20)")
    ap.add_argument("--procs", type=int, default=2, help="load processes (default 2)")
    ap.add_argument("--rate", type=int, default=8000,
                    help="total requests/s, 0 = closed loop (default 8000)")
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--steady", type=float, default=5.0, help="each steady window, s")
    ap.add_argument("--window", type=float, default=5.0, help="reload window, s")
    ap.add_argument("--interval", type=float, default=0.5, help="s between reloads")
    ap.add_argument("--keep", action="store_true", help="keep the logs and policy files")
    args = ap.parse_args()
    if not LUAGENT.exists():
        sys.exit("%s is not built (run make)" % LUAGENT)

    tmp = Path(tempfile.mkdtemp(prefix="reload_bench."))
    servers, lg, probes, procs = [], None, [], []
    try:
        servers = [Memcached(tmp) for _ in range(3)]
        path = tmp / "policy.lua"
        pol = {"A": policy("a", servers[:2]), "B": policy("b", servers[2:])}
        write_policy(path, pol["A"])
        port = free_port()
        lg = Luagent(["-c", path, "-t", args.threads, "-vv"], tmp / "luagent.log", port)
        lg.wait_listening(lg.sockaddr)
        addr = (HOST, port)
        # one probe per worker: connections opened one after the other are
        # handed to the workers round robin, before any load connection exists
        probes = [Probe(addr) for _ in range(args.threads)]
        assert all(p.generation() == 1 for p in probes)

        t0 = time.monotonic() + 0.5
        t_steady1 = t0 + args.warmup
        t_reload = t_steady1 + args.steady
        t_steady2 = t_reload + args.window
        t_end = t_steady2 + args.steady
        q = multiprocessing.Queue()
        per = [args.conns // args.procs + (1 if i < args.conns % args.procs else 0)
               for i in range(args.procs)]
        rate_per_conn = args.rate / args.conns if args.rate > 0 else 0.0
        first = 0
        for n in per:
            p = multiprocessing.Process(target=load_proc, args=(
                addr, n, first, rate_per_conn, t0, t_end, q), daemon=True)
            p.start()
            procs.append(p)
            first += n

        while time.monotonic() < t_reload:
            time.sleep(0.01)
        rss_before = rss_kib(lg.pid)
        reloads = []        # (generation, kill wall time, kill mono, all-swapped mono)
        gen = 1
        next_at = t_reload
        while next_at + args.interval <= t_steady2 + 1e-9:
            while time.monotonic() < next_at:
                time.sleep(0.0005)
            gen += 1
            write_policy(path, pol["B" if gen % 2 == 0 else "A"])
            wall, mono = time.time(), time.monotonic()
            lg.signal(signal.SIGHUP)
            pending = list(probes)
            while pending:
                pending = [p for p in pending if p.generation() != gen]
                if time.monotonic() - mono > 10:
                    raise SystemExit("generation %d not reached by every worker in 10 s\n%s"
                                     % (gen, lg.log()))
            reloads.append((gen, wall, mono, time.monotonic()))
            next_at += args.interval
        while time.monotonic() < t_steady2:
            time.sleep(0.01)
        rss_after = rss_kib(lg.pid)

        results = [q.get(timeout=args.steady + 60) for _ in procs]
        for p in procs:
            p.join(10)
        alive = lg.alive()
        stats_probe = probes[0]
        stats_probe.sock.sendall(b"stats\r\n")
        buf = bytearray()
        while not buf.endswith(b"END\r\n"):
            buf += stats_probe.sock.recv(65536)
        st = dict(re.findall(r"STAT (\S+) (\S+)\r\n", buf.decode()))
    finally:
        for p in probes:
            p.close()
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGTERM)
                p.join(5)
        log_text = lg.log() if lg else ""
        if lg:
            lg.stop()
        for s in servers:
            s.stop()

    # ---- report ----------------------------------------------------------
    samples = []
    closed = 0
    err_samples = []
    for tb, lb, eb, cl, es in results:
        t = array.array("d"); t.frombytes(tb)
        l = array.array("d"); l.frombytes(lb)
        e = array.array("b"); e.frombytes(eb)
        samples.extend(zip(t, l, e))
        closed += cl
        err_samples += es
    windows = [("steady (before)", t_steady1, t_reload),
               ("reloads every %.1fs" % args.interval, t_reload, t_steady2),
               ("steady (after)", t_steady2, t_end)]
    print("reload_bench: luagent -t %d, %d connections in %d processes, 10:1 get:set, %s"
          % (args.threads, args.conns, args.procs,
             "%d req/s offered" % args.rate if args.rate else "closed loop"))
    print("  (%d CPUs; memcached x3, luagent and the load share them)" % os.cpu_count())
    print()
    print("  %-20s %8s %9s %8s %8s %8s %8s %8s %6s" % (
        "window", "requests", "req/s", "p50 ms", "p90 ms", "p99 ms", "p99.9", "max ms",
        "errors"))
    for name, a, b in windows:
        w = sorted(l for t, l, e in samples if a <= t < b)
        errors = sum(e for t, l, e in samples if a <= t < b)
        print("  %-20s %8d %9.0f %s  %s  %s  %s  %s %6d" % (
            name, len(w), len(w) / (b - a), ms(pct(w, 50)), ms(pct(w, 90)), ms(pct(w, 99)),
            ms(pct(w, 99.9)), ms(w[-1] if w else float("nan")), errors))
    slow = sorted((s for s in samples if t_reload <= s[0] < t_steady2), key=lambda s: -s[1])
    kills = [mono for g, wall, mono, done in reloads]
    if slow and kills:
        desc, picked = [], []
        for t, l, e in slow:
            if len(picked) == 3:
                break
            if any(t < pt + pl and pt < t + l for pt, pl in picked):
                continue        # the same stall seen by another connection
            picked.append((t, l))
            before = [k for k in kills if k <= t + l]
            desc.append("%.1f ms (%s)" % (l * 1000, "sent %+.1f ms from the last SIGHUP" % (
                (t - before[-1]) * 1000) if before else "before the first SIGHUP"))
        print("  3 slowest distinct stalls in the reload window: " + "; ".join(desc))
    print("  closed client connections: %d; luagent %s after the run" % (
        closed, "running" if alive else "NOT RUNNING"))
    if err_samples:
        print("  error replies, e.g.: %r" % err_samples[:3])
    print()

    client_swap = [(done - mono) for g, wall, mono, done in reloads]
    lt = log_times(log_text)
    load_t, hand_t, total_t = [], [], []
    for g, wall, mono, done in reloads:
        line_t, swaps = lt.get(g, (None, []))
        if line_t is not None:
            load_t.append(line_t - wall)
            if len(swaps) == args.threads:
                hand_t.append(max(swaps) - line_t)
                total_t.append(max(swaps) - wall)

    def summary(xs):
        if not xs:
            return "n/a"
        return "min %s  median %s  max %s ms" % (ms(min(xs)), ms(statistics.median(xs)),
                                                 ms(max(xs)))

    print("  %d reloads; SIGHUP -> every worker on the new generation:" % len(reloads))
    print("    client side (probe per worker, stats polled):  %s" % summary(client_swap))
    print("    luagent log, SIGHUP -> 'reload:' line (load):  %s" % summary(load_t))
    print("    luagent log, 'reload:' -> last worker swapped: %s" % summary(hand_t))
    print("    luagent log, SIGHUP -> last worker swapped:    %s" % summary(total_t))
    print("    (log timestamps have 1 ms resolution)")
    print("  luagent stats: config_generation %s, reloads %s, reload_failures %s, "
          "server_errors %s, cmd_get %s, cmd_set %s (client saw %d requests)" % (
              st.get("config_generation"), st.get("reloads"), st.get("reload_failures"),
              st.get("server_errors"), st.get("cmd_get"), st.get("cmd_set"), len(samples)))
    print("  luagent RSS: %d KiB before the reload window, %d KiB after %d reloads"
          % (rss_before, rss_after, len(reloads)))
    print("  generations retired (log): %d" % log_text.count(" retired"))
    if args.keep:
        print("  files kept in %s" % tmp)
    else:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
