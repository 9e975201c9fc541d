"""
Integration fixtures: real memcached servers, the real ./luagent, raw clients.

Everything listens on 127.0.0.1 on a free port in 20000-32000 (below Linux's
ephemeral range). Every process a fixture starts is stopped by its PID at
teardown (SIGTERM, then SIGKILL after a timeout, then wait()). Readiness is a
connect poll with a deadline, never a fixed sleep. When a test fails, the
stderr log of every luagent (and nutcracker) it started is attached to the
failure report.

Helpers the test modules import directly: RawClient, Proc, free_port,
wait_listening, rss_kib, run_in_threads, placement functions (djb_hash /
modula_index / Ketama) and placement() (where keys landed, asked directly).
"""
import hashlib
import math
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest

import mock_backend

REPO = Path(__file__).resolve().parents[2]
LUAGENT = Path(os.environ.get("LUAGENT", str(REPO / "luagent")))
MEMCACHED = shutil.which("memcached") or "/usr/bin/memcached"
NUTCRACKER = shutil.which("nutcracker") or "/usr/sbin/nutcracker"

HOST = "127.0.0.1"
# `make test SAN=1` sets this: ASan's quarantine and shadow memory make the
# process's resident size meaningless, so memory-bound checks stand down.
SANITIZED = os.environ.get("LUAGENT_SANITIZED") == "1"
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")
START_DEADLINE = 10.0       # seconds for a process to accept connections
STOP_TIMEOUT = 5.0          # seconds between SIGTERM and SIGKILL
CLIENT_TIMEOUT = 5.0        # socket timeout of every test client: the hang detector
ITEM_MAX = 1024 * 1024      # luagent's default item_max

_handed_out = set()


# --------------------------------------------------------------------------
# Ports and processes
# --------------------------------------------------------------------------

def free_port():
    """A port in 20000-32000 that binds on 127.0.0.1 right now."""
    for _ in range(500):
        port = random.randint(20000, 32000)
        if port in _handed_out:
            continue
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((HOST, port))
        except OSError:
            continue
        finally:
            s.close()
        _handed_out.add(port)
        return port
    raise RuntimeError("no free port found in 20000-32000")


def try_connect(addr, timeout=0.5):
    """Connect to (host, port) or a unix socket path; return the socket or None."""
    fam = socket.AF_UNIX if isinstance(addr, str) else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(addr)
        return s
    except OSError:
        s.close()
        return None


class StartError(Exception):
    pass


def _rlimits_setter(rlimits):
    """A preexec_fn setting {resource.RLIMIT_*: value} (soft and hard), or None.
    (setrlimit in the child: the prlimit tool is not everywhere.)"""
    if not rlimits:
        return None
    import resource

    def apply():
        for which, value in rlimits.items():
            resource.setrlimit(which, (value, value))
    return apply
def _socket_inodes(pid):
    """Inodes of the sockets process pid has open."""
    inodes = set()
    try:
        fds = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _listening_inodes(addr):
    """Inodes of the sockets listening on addr: a (host, port) or a unix path."""
    inodes = set()
    if isinstance(addr, str):
        with open("/proc/net/unix") as f:
            for line in f:
                fields = line.split()
                if len(fields) == 8 and fields[7] == addr and fields[5] == "01":
                    inodes.add(fields[6])
        return inodes
    port = ":%04X " % addr[1]
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                for line in f:
                    if port not in line:
                        continue
                    fields = line.split()
                    if fields[1].endswith(port.strip()) and fields[3] == "0A":
                        inodes.add(fields[9])
        except OSError:
            continue
    return inodes


def listens_on(pid, addr):
    """Whether process pid itself listens on addr. A connection that succeeds
    proves less: the port may be another program's, which took it between
    free_port() and the start (other test runs share the machine), while the
    process under test is about to exit with "Address already in use"."""
    return bool(_socket_inodes(pid) & _listening_inodes(addr))


class Proc:
    """A child process with its stdout+stderr captured to a log file."""

    def __init__(self, name, argv, log_path, rlimits=None):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = Path(log_path)
        self._logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=self._logf, stderr=subprocess.STDOUT,
                                     preexec_fn=_rlimits_setter(rlimits))

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def log(self):
        try:
            return self.log_path.read_bytes().decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_listening(self, addr, deadline=START_DEADLINE):
        """Poll-connect addr until it accepts and this process is the one
        listening there; fail early if the process exits."""
        end = time.monotonic() + deadline
        while True:
            if not self.alive():
                raise StartError("%s exited with status %s before listening on %r\n"
                                 "argv: %s\n--- log ---\n%s" % (
                                     self.name, self.proc.returncode, addr,
                                     " ".join(self.argv), self.log()))
            s = try_connect(addr)
            if s is not None:
                s.close()
                if listens_on(self.pid, addr):
                    return
            if time.monotonic() > end:
                raise StartError("%s not listening on %r after %.0fs\nargv: %s\n"
                                 "--- log ---\n%s" % (self.name, addr, deadline,
                                                      " ".join(self.argv), self.log()))
            time.sleep(0.01)

    def signal(self, sig):
        if self.alive():
            os.kill(self.pid, sig)

    def stop(self, timeout=STOP_TIMEOUT, wake=None):
        """SIGTERM, wait, SIGKILL if still there, wait. Returns the exit status.
        wake: an address to connect to once after SIGTERM (memcached only acts
        on the signal when its main event loop wakes up, else up to 1 s later)."""
        if self.alive():
            try:
                os.kill(self.pid, signal.SIGTERM)
                if wake is not None:
                    s = try_connect(wake)
                    if s is not None:
                        s.close()
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                self.proc.wait()
        self._logf.close()
        return self.proc.returncode

    def kill(self):
        """SIGKILL by PID (a crash), then reap."""
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        self.proc.wait()
        return self.proc.returncode


def rss_kib(pid, field="VmRSS"):
    """VmRSS of process pid, in KiB (field="VmHWM": its peak so far)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s for pid %d" % (field, pid))


class Memcached:
    """A real memcached on 127.0.0.1. -I 2m so a 1 MiB value fits (memcached's
    default 1m counts the item header and rejects exactly 1048576 bytes)."""

    def __init__(self, tmpdir, port=None, extra=()):
        self.tmpdir = Path(tmpdir)
        self.fixed_port = port is not None
        self.port = port
        self.extra = list(extra)
        self.proc = None
        self.start()

    @property
    def addr(self):
        return "%s:%d" % (HOST, self.port)

    @property
    def sockaddr(self):
        return (HOST, self.port)

    @property
    def pid(self):
        return self.proc.pid

    def start(self):
        last = None
        for _ in range(5):
            if self.port is None or (last is not None and not self.fixed_port):
                self.port = free_port()
            argv = [MEMCACHED, "-p", self.port, "-l", HOST, "-U", "0", "-t", "1",
                    "-m", "64", "-I", "2m"] + self.extra
            if os.geteuid() == 0:
                argv += ["-u", "root"]
            log = self.tmpdir / ("memcached-%d.log" % self.port)
            self.proc = Proc("memcached", argv, log)
            try:
                self.proc.wait_listening(self.sockaddr)
                return
            except StartError as e:
                self.proc.stop()
                last = e
                if self.fixed_port:
                    # restart on the same port: give the old socket a chance
                    continue
        raise last

    def stop(self):
        return self.proc.stop(wake=self.sockaddr)

    def kill(self):
        return self.proc.kill()

    def restart(self):
        """Start again on the same port (after stop/kill)."""
        self.proc.stop()
        self.fixed_port = True
        self.start()

    def client(self):
        return RawClient(self.sockaddr)

    def present(self, keys):
        """The subset of keys this server holds (asked directly, batched)."""
        keys = list(keys)
        found = set()
        c = self.client()
        try:
            for i in range(0, len(keys), 100):
                batch = keys[i:i + 100]
                c.send(b"get " + b" ".join(_b(k) for k in batch) + b"\r\n")
                for key, _flags, _data, _cas in c.read_values():
                    found.add(key)
        finally:
            c.close()
        return found

    def get(self, key):
        """Direct get: the value bytes or None."""
        c = self.client()
        try:
            c.send(b"get " + _b(key) + b"\r\n")
            vals = c.read_values()
        finally:
            c.close()
        return vals[0][2] if vals else None


class Luagent(Proc):
    """./luagent -D -l 127.0.0.1 -p PORT [-f PATH] <args>."""

    def __init__(self, args, log_path, port, unix=None, rlimits=None):
        self.port = port
        self.unix = unix
        self.ready = False      # set once it accepted a connection
        self.stopped = False    # set when a test stops or kills it on purpose
        argv = [LUAGENT, "-D", "-l", HOST, "-p", port]
        if unix:
            argv += ["-f", unix]
        argv += list(args)
        super().__init__("luagent", argv, log_path, rlimits=rlimits)

    @property
    def sockaddr(self):
        return (HOST, self.port) if self.port else self.unix

    def listen_addrs(self):
        """Every address this luagent was asked to listen on: -p, --tls-port,
        -f/--unix, --listen NAME=ADDR:PORT and --metrics. It opens them one after the other, so a
        connection accepted on one says nothing about the next."""
        addrs = [(HOST, self.port)] if self.port else []
        argv = self.argv[1:]
        for i, arg in enumerate(argv):
            name, eq, value = arg.partition("=")
            if not eq:
                value = argv[i + 1] if i + 1 < len(argv) else ""
            if name == "--tls-port":
                addrs.append((HOST, int(value)))
            elif name in ("-f", "--unix"):
                addrs.append(value)
            elif name == "--metrics":
                host, _, port = value.rpartition(":")
                addrs.append((host, int(port)))
            elif name in ("-l", "--listen") and "=" in value:
                host, _, port = value.partition("=")[2].rpartition(":")
                addrs.append((host, int(port)))
            elif name == "--":
                break       # the policy's own arguments (lg.args.extra)
        return list(dict.fromkeys(addrs))

    def wait_serving(self):
        """Wait until every listening address accepts."""
        for addr in self.listen_addrs():
            self.wait_listening(addr)

    def stop(self, *a, **kw):
        self.stopped = True
        return super().stop(*a, **kw)

    def kill(self):
        self.stopped = True
        return super().kill()

    def client(self, timeout=CLIENT_TIMEOUT):
        return RawClient(self.sockaddr, timeout=timeout)

    def stats(self, group=b""):
        c = self.client()
        try:
            return c.stats(group)
        finally:
            c.close()


def _b(s):
    return s if isinstance(s, (bytes, bytearray)) else str(s).encode()


# The built-in policy's pool over -s (same placement, -k for ketama) with a 4 s
# timeout instead of 1 s, for tests whose subject is not time: on a loaded
# machine (or under SAN=1) a healthy request can take longer than 1 s, and the
# test would fail for the machine's sake. A request that is lost still fails,
# with luagent's timeout line, before the client's 5 s hang detector.
UNHURRIED_POLICY = ('local lg = require "luagent"\n'
                    'return lg.policy{ route = lg.pool{ name = "main", '
                    'servers = lg.args.servers, timeout_ms = 4000, '
                    'dist = lg.args.ketama and "ketama" or "modula" } }\n')


def unhurried(tmp_path):
    """luagent arguments that load UNHURRIED_POLICY."""
    path = Path(tmp_path) / "unhurried.lua"
    path.write_text(UNHURRIED_POLICY)
    return ("-c", str(path))


# --------------------------------------------------------------------------
# Raw protocol client
# --------------------------------------------------------------------------

class ReplyTimeout(AssertionError):
    pass


class RawClient:
    """Byte-level memcached text client. Every read has a socket timeout
    (CLIENT_TIMEOUT): a proxy that hangs fails the test with what it sent so far."""

    def __init__(self, addr, timeout=CLIENT_TIMEOUT):
        if isinstance(addr, str):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(addr)
        else:
            self.sock = socket.create_connection(addr, timeout=timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.transcript = bytearray()   # every byte received, for diagnostics

    def send(self, data):
        self.sock.sendall(_b(data))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _fill(self):
        try:
            chunk = self.sock.recv(262144)
        except socket.timeout:
            raise ReplyTimeout("no reply within %.1fs; buffered so far: %r; "
                               "last bytes received: %r" % (
                                   self.sock.gettimeout(), bytes(self.buf[:300]),
                                   bytes(self.transcript[-300:])))
        if not chunk:
            raise EOFError("connection closed by peer; buffered: %r" % bytes(self.buf[:300]))
        self.buf += chunk
        self.transcript += chunk
        if len(self.transcript) > 1 << 20:
            del self.transcript[:-4096]

    def recv_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def recv_until(self, term=b"\r\n"):
        start = 0
        while True:
            i = self.buf.find(term, start)
            if i >= 0:
                end = i + len(term)
                out = bytes(self.buf[:end])
                del self.buf[:end]
                return out
            start = max(0, len(self.buf) - len(term) + 1)
            self._fill()

    def read_line(self):
        return self.recv_until(b"\r\n")

    def read_retrieval(self):
        """Raw bytes of one get/gets/gat/gats reply: VALUE blocks then END, or an
        error line."""
        out = bytearray()
        while True:
            line = self.read_line()
            out += line
            if line.startswith(b"VALUE "):
                parts = line.split()
                if len(parts) < 4:
                    raise AssertionError("malformed VALUE line %r" % line)
                out += self.recv_exact(int(parts[3]) + 2)
                continue
            return bytes(out)

    def read_reply(self, kind):
        """kind: None (noreply: read nothing), 'line', 'get' or 'stats'."""
        if kind is None:
            return b""
        if kind == "line":
            return self.read_line()
        if kind == "get":
            return self.read_retrieval()
        if kind == "stats":
            out = bytearray()
            while True:
                line = self.read_line()
                out += line
                if not line.startswith(b"STAT "):
                    return bytes(out)
        raise ValueError(kind)

    def call(self, data, kind="line"):
        self.send(data)
        return self.read_reply(kind)

    def pipeline(self, requests, kinds):
        """Send all requests at once (a writer thread, so neither side blocks on
        full socket buffers) and read one reply per kind; returns the replies."""
        import threading
        payload = b"".join(_b(r) for r in requests)
        if isinstance(kinds, str) or kinds is None:
            kinds = [kinds] * len(requests)
        t = threading.Thread(target=self.sock.sendall, args=(payload,), daemon=True)
        t.start()
        try:
            return [self.read_reply(k) for k in kinds]
        finally:
            t.join(CLIENT_TIMEOUT)

    def read_values(self):
        """Parse one retrieval reply into [(key, flags, data, cas|None)].
        An error line raises AssertionError."""
        raw = self.read_retrieval()
        return parse_values(raw)

    def stats(self, arg=b""):
        raw = self.call(b"stats" + (b" " + arg if arg else b"") + b"\r\n", "stats")
        return parse_stats(raw)

    def read_until_close(self):
        """Everything until EOF (or a reset after the data)."""
        while True:
            try:
                self._fill()
            except EOFError:
                break
            except ConnectionResetError:
                break
        out = bytes(self.buf)
        self.buf.clear()
        return out


def parse_values(raw):
    vals = []
    pos = 0
    while True:
        end = raw.index(b"\r\n", pos)
        line = raw[pos:end]
        pos = end + 2
        if line == b"END":
            assert pos == len(raw), "bytes after END: %r" % raw[pos:]
            return vals
        if not line.startswith(b"VALUE "):
            raise AssertionError("retrieval reply ended with %r" % line)
        parts = line.split(b" ")
        n = int(parts[3])
        data = raw[pos:pos + n]
        assert raw[pos + n:pos + n + 2] == b"\r\n", "value block not ended by CRLF"
        pos += n + 2
        cas = int(parts[4]) if len(parts) > 4 else None
        vals.append((parts[1].decode(), int(parts[2]), data, cas))


def parse_stats(raw):
    lines = raw.split(b"\r\n")
    assert lines[-1] == b"" and lines[-2] == b"END", "stats must end with END: %r" % raw[-50:]
    out = {}
    for line in lines[:-2]:
        parts = line.split(b" ", 2)
        assert len(parts) == 3 and parts[0] == b"STAT", "bad stats line %r" % line
        out[parts[1].decode()] = parts[2].decode()
    return out


def set_cmd(key, value, flags=0, exptime=0, noreply=False, cmd="set"):
    value = _b(value)
    return b"%s %s %d %d %d%s\r\n%s\r\n" % (_b(cmd), _b(key), flags, exptime, len(value),
                                           b" noreply" if noreply else b"", value)


def run_in_threads(worker, count, join_timeout=30):
    """Run worker(n) for n in range(count), each in its own thread, and assert
    that none failed. A worker fails by returning a message or by raising
    (reported as "client <n>: <exception>")."""
    errors = []

    def run(n):
        try:
            msg = worker(n)
            if msg:
                errors.append(msg)
        except Exception as e:          # noqa: BLE001 - reported below
            errors.append("client %d: %r" % (n, e))

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(join_timeout)
    assert not errors, errors


# --------------------------------------------------------------------------
# Placement oracles (DESIGN.md section 3)
# --------------------------------------------------------------------------

def djb_hash(key):
    h = 5381
    for byte in _b(key):
        h = (h * 33 + byte) & 0xFFFFFFFF
    return h & 0x7FFFFFFF


def modula_index(key, nservers):
    """magent's placement without -k: DJB hash modulo the number of servers."""
    return djb_hash(key) % nservers


def _f32(x):
    return struct.unpack("f", struct.pack("f", x))[0]


class Ketama:
    """twemproxy/libketama ketama ring (md5 points, md5 key hash)."""

    def __init__(self, servers):
        """servers: list of (host, port, weight); index = position in the list."""
        total = sum(w for _, _, w in servers)
        n = len(servers)
        points = []
        for idx, (host, port, weight) in enumerate(servers):
            name = host if port == 11211 else "%s:%d" % (host, port)
            pct = _f32(_f32(weight) / _f32(total))
            pps = int(math.floor(_f32(_f32(_f32(pct * 160) / 4) * n) + 0.0000000001)) * 4
            for i in range(pps // 4):
                d = hashlib.md5(("%s-%d" % (name, i)).encode()).digest()
                for h in range(4):
                    points.append((struct.unpack("<I", d[4 * h:4 * h + 4])[0], idx))
        points.sort(key=lambda p: p[0])
        self.values = [p[0] for p in points]
        self.index = [p[1] for p in points]

    def server(self, key):
        import bisect
        h = struct.unpack("<I", hashlib.md5(_b(key)).digest()[:4])[0]
        i = bisect.bisect_left(self.values, h)
        if i == len(self.values):
            i = 0
        return self.index[i]


def placement(servers, keys):
    """{key: index of the server holding it} for the keys stored anywhere
    (asked directly); a key held by two servers fails."""
    out = {}
    for i, s in enumerate(servers):
        for k in s.present(keys):
            assert k not in out, "key %s on two servers" % k
            out[k] = i
    return out


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------

INFO_LINES = []


def report_info(line):
    """An informational line printed in the terminal summary of every run."""
    INFO_LINES.append(line)


def pytest_terminal_summary(terminalreporter):
    if INFO_LINES:
        terminalreporter.section("luagent integration: information")
        for line in INFO_LINES:
            terminalreporter.write_line(line)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for p in getattr(item, "_logged_procs", []):
            rc = p.proc.poll()
            state = "running" if rc is None else "exited with status %s" % rc
            rep.sections.append(("%s log (pid %s, %s, argv: %s)" % (
                p.name, p.pid, state, " ".join(p.argv)), p.log() or "(empty)"))


@pytest.fixture
def memcached(request, tmp_path):
    """Factory: memcached(port=None, extra=()) -> Memcached, stopped at teardown."""
    started = []

    def make(port=None, extra=()):
        m = Memcached(tmp_path, port=port, extra=extra)
        started.append(m)
        return m

    yield make
    for m in started:
        m.stop()


@pytest.fixture
def luagent(request, tmp_path):
    """Factory: luagent(*args, servers=[...], backups=[...], port=None, unix=None,
    wait=True, stats_poll=False, rlimits=None) -> Luagent. servers/backups take
    Memcached objects or "host:port" strings and become -s/-b. port=None picks a
    free port; port=0 with unix=PATH serves only the unix socket. With wait=True
    it returns once every address it listens on accepts (-p, --tls-port, -f,
    --metrics). The background stats poll (one connection per server of its own,
    a `stats` at start) is off unless stats_poll=True or args give
    --server-stats-interval: tests that count a server's connections or requests
    see only the request path's. rlimits: {resource.RLIMIT_*: value} set in the
    child before exec. Stopped (by PID) at
    teardown; its log is attached to the report when the test fails."""
    started = []
    procs = request.node.__dict__.setdefault("_logged_procs", [])

    def make(*args, servers=(), backups=(), port=None, unix=None, wait=True,
             stats_poll=False, rlimits=None):
        if not LUAGENT.exists():
            pytest.fail("%s is not built (run make)" % LUAGENT)
        argv = []
        if not stats_poll and "--server-stats-interval" not in args:
            argv += ["--server-stats-interval", "0"]
        for s in servers:
            argv += ["-s", s.addr if isinstance(s, Memcached) or hasattr(s, "addr") else s]
        for b in backups:
            argv += ["-b", b.addr if hasattr(b, "addr") else b]
        argv += list(args)
        for attempt in range(5):
            p = port if port is not None else free_port()
            log = tmp_path / ("luagent-%d-%d.log" % (len(started), attempt))
            lg = Luagent(argv, log, p, unix=unix, rlimits=rlimits)
            started.append(lg)
            procs.append(lg)
            if not wait:
                return lg
            try:
                lg.wait_serving()
                lg.ready = True
                return lg
            except StartError as e:
                lg.stop()
                if port is None and "in use" in lg.log().lower() and attempt < 4:
                    continue    # lost a race for the port: pick another
                pytest.fail(str(e))
        pytest.fail("luagent could not start")

    yield make
    # A luagent that died on its own during the test is a failure (crash
    # detector), even if every reply the test looked at was right.
    died = [lg for lg in started if lg.ready and not lg.stopped and not lg.alive()]
    for lg in started:
        lg.stop()
    if died:
        pytest.fail("luagent died during the test: " + "; ".join(
            "pid %d exited with status %s; log:\n%s" % (lg.pid, lg.proc.returncode, lg.log())
            for lg in died))
    # Under `make test SAN=1` a sanitizer report is a failure even when the
    # process survived it (leaks are reported at exit).
    reported = [lg for lg in started if any(m in lg.log() for m in SANITIZER_MARKS)]
    if reported:
        pytest.fail("sanitizer report from luagent: " + "; ".join(
            "pid %d; log:\n%s" % (lg.pid, lg.log()) for lg in reported))


@pytest.fixture
def raw_client(request):
    """Factory: raw_client(target) -> RawClient, closed at teardown. target is a
    Luagent/Memcached, a (host, port) tuple or a unix socket path."""
    clients = []

    def make(target, timeout=CLIENT_TIMEOUT):
        addr = target.sockaddr if hasattr(target, "sockaddr") else target
        c = RawClient(addr, timeout=timeout)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


@pytest.fixture
def cluster(memcached, luagent):
    """Factory: cluster(n=3, *args) -> (Luagent, [Memcached...]) over n fresh servers."""

    def make(n=3, *args):
        servers = [memcached() for _ in range(n)]
        lg = luagent(*args, servers=servers)
        return lg, servers

    return make


@pytest.fixture
def mock():
    """Factory: mock(handler) -> a scripted mock_backend.MockBackend, stopped
    at teardown."""
    started = []

    def make(handler):
        m = mock_backend.MockBackend(handler)
        started.append(m)
        return m

    yield make
    for m in started:
        m.stop()
