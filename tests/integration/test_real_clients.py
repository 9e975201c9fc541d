"""
The real-client suite: the memcached client libraries people use run the same
scripted sequence (tests/clients/steps.txt, one driver per language in
tests/clients/) through luagent over three memcached servers and through one
direct memcached, and every result is compared, cell by cell.

A cell where luagent's result differs from memcached's fails, unless EXPLAINED
below gives the reason. The table of every result, with those reasons, is
written to docs/protocol.md between its markers; the test that writes it fails
when the committed table was not what this run produced (commit the file).

memcached runs with its default item size (-I 1m) here, as users run it, so
that the size steps meet memcached's own limit.
"""
import concurrent.futures
import os
import re
import shutil
import subprocess

import pytest

from conftest import (HOST, LUAGENT, REPO, SANITIZER_MARKS, Luagent, Memcached, StartError,
                      free_port)
from php_session import SESSION_ID, assert_shared, php_ini, php_session_run

CLIENTS_DIR = REPO / "tests" / "clients"
PROTOCOL_MD = REPO / "docs" / "protocol.md"
PYTHON = "/usr/bin/python3"
GO_DRIVER = REPO / "build" / "clients" / "driver-go"
GOMEMCACHE_PACKAGE = "golang-github-bradfitz-gomemcache-dev"
DRIVER_TIMEOUT = 120        # seconds for one driver run (the hang detector)
BACKENDS = 3                # memcached servers behind luagent

# id -> (column title, argv before the server address)
CLIENTS = {
    "pymemcache": ("pymemcache", [PYTHON, CLIENTS_DIR / "driver.py", "pymemcache"]),
    "pylibmc": ("pylibmc", [PYTHON, CLIENTS_DIR / "driver.py", "pylibmc"]),
    "pylibmc-ketama": ("pylibmc, ketama", [PYTHON, CLIENTS_DIR / "driver.py", "pylibmc-ketama"]),
    "cmf": ("Cache::Memcached::Fast", ["perl", CLIENTS_DIR / "driver.pl",
                                       "Cache::Memcached::Fast"]),
    "cm": ("Cache::Memcached", ["perl", CLIENTS_DIR / "driver.pl", "Cache::Memcached"]),
    "php": ("php-memcached", ["php", CLIENTS_DIR / "driver.php"]),
    "php-memcache": ("php-memcache", ["php", CLIENTS_DIR / "driver_memcache.php"]),
    "go": ("gomemcache", [GO_DRIVER]),
    "npm": ("npm memcached", ["node", CLIENTS_DIR / "driver.js"]),
}

# Differences from a direct memcached that are known, with the reason. Each
# reason becomes a note under the table in docs/protocol.md. An entry whose
# difference no longer occurs fails too, so this list stays true.
VERSION_WORDS = (
    "The client returns the text after `VERSION` as it is. luagent answers "
    "`VERSION 1.6.18 luagent-0.1.0`: the memcached version it speaks is the first "
    "word, as clients that parse the line read it, and luagent's own version follows.")
STATS_VERSION = (
    "Cache::Memcached has no `version` call, so the driver reads `STAT version` from "
    "`stats`: luagent reports the same text as its `version` line there.")
EXPLAINED = {
    ("pymemcache", "version"): VERSION_WORDS,
    ("cmf", "version"): VERSION_WORDS,
    ("cm", "version"): STATS_VERSION,
}

TABLE_BEGIN = "<!-- real-client table: written by tests/integration/test_real_clients.py -->"
TABLE_END = "<!-- end of the real-client table -->"


def steps():
    """The step names of tests/clients/steps.txt, in order."""
    names = []
    for line in (CLIENTS_DIR / "steps.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            names.append(re.split(r"\s{2,}", line.strip())[0])
    return names


def build_go_driver():
    """Build tests/clients/driver.go offline, against Debian's copy of gomemcache
    (GOPATH mode over /usr/share/gocode: no module download). Go's build cache
    lives beside the binary in build/clients, so a rebuild costs little."""
    cache = GO_DRIVER.parent / "gocache"
    env = dict(os.environ, GO111MODULE="off", GOPATH="/usr/share/gocode", GOFLAGS="",
               GOCACHE=str(cache), GOTOOLCHAIN="local")
    version = subprocess.run(["dpkg-query", "-W", "-f=${Version}", GOMEMCACHE_PACKAGE],
                             capture_output=True, timeout=30).stdout.decode() or "?"
    p = subprocess.run(["go", "build", "-ldflags", "-X main.version=" + version,
                        "-o", str(GO_DRIVER), str(CLIENTS_DIR / "driver.go")],
                       env=env, cwd=REPO, capture_output=True, timeout=300)
    assert p.returncode == 0, "go build of tests/clients/driver.go failed:\n%s" % (
        p.stderr.decode("utf-8", "replace"))


def run_driver(client, addr):
    """Run one driver against addr; returns (client name, {step: result})."""
    argv = [str(a) for a in CLIENTS[client][1]] + [addr]
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=DRIVER_TIMEOUT, cwd=REPO)
    out = p.stdout.decode("utf-8", "replace")
    assert p.returncode == 0, "%s against %s exited with %d:\n%s%s" % (
        client, addr, p.returncode, out, p.stderr.decode("utf-8", "replace"))
    lines = [tuple(l.split("\t", 1)) if "\t" in l else (l, "") for l in out.splitlines()]
    assert lines and lines[0][0] == "client", "%s printed %r" % (client, out[:300])
    return lines[0][1], lines[1:]


class Run:
    """One client's two runs: through luagent and through a direct memcached."""

    def __init__(self, client, tmpdir):
        self.client = client
        self.tmpdir = tmpdir
        self.procs = []
        self.luagent = None

    def start(self):
        memcached_args = ["-I", "1m"]
        self.direct = Memcached(self.tmpdir, extra=memcached_args)
        self.procs.append(self.direct)
        backends = [Memcached(self.tmpdir, extra=memcached_args) for _ in range(BACKENDS)]
        self.procs += backends
        argv = ["-k"]
        for b in backends:
            argv += ["-s", b.addr]
        for attempt in range(5):
            port = free_port()
            lg = Luagent(argv, self.tmpdir / ("luagent-%d.log" % attempt), port)
            self.procs.append(lg)
            try:
                lg.wait_listening(lg.sockaddr)
                self.luagent = lg
                break
            except StartError:
                lg.stop()
                if "in use" not in lg.log().lower():
                    raise
        assert self.luagent, "luagent did not start for %s" % self.client
        self.backends = backends

    def run(self):
        self.start()
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            via = pool.submit(run_driver, self.client, "%s:%d" % (HOST, self.luagent.port))
            direct = pool.submit(run_driver, self.client, self.direct.addr)
            self.name, self.via = via.result()
            _, self.direct_results = direct.result()
        # Every server behind luagent took part.
        stats = self.luagent.stats()
        self.requests = [int(stats.get("server:%s:requests" % b.addr, 0)) for b in self.backends]
        self.alive = self.luagent.alive()
        return self

    def stop(self):
        for p in self.procs:
            p.stop()
        return [p for p in self.procs if isinstance(p, Luagent)
                and any(m in p.log() for m in SANITIZER_MARKS)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """client id -> Run, every client run in parallel (three at a time)."""
    tools = [argv[0] for _, argv in CLIENTS.values() if argv[0] != GO_DRIVER] + ["go"]
    missing = [t for t in tools if not shutil.which(str(t))]
    assert not missing, "not installed: %s (run scripts/deps.sh test)" % missing
    build_go_driver()
    if not LUAGENT.exists():
        pytest.fail("%s is not built (run make)" % LUAGENT)
    all_runs = {c: Run(c, tmp_path_factory.mktemp(c)) for c in CLIENTS}
    try:
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            done = {c: pool.submit(r.run) for c, r in all_runs.items()}
            errors = {}
            for c, f in done.items():
                try:
                    f.result()
                except Exception as e:     # reported per client below
                    errors[c] = e
        yield all_runs, errors
    finally:
        reported = []
        for r in all_runs.values():
            reported += r.stop()
        if reported:
            pytest.fail("sanitizer report from luagent: " + "; ".join(
                "pid %d; log:\n%s" % (lg.pid, lg.log()) for lg in reported))


def client_run(runs, client):
    all_runs, errors = runs
    if client in errors:
        raise errors[client]
    return all_runs[client]


@pytest.mark.parametrize("client", list(CLIENTS))
def test_driver_runs_every_step(runs, client):
    r = client_run(runs, client)
    want = steps()
    for target, results in (("luagent", r.via), ("memcached", r.direct_results)):
        got = [step for step, _ in results]
        assert got == want, "%s through %s ran %s, steps.txt says %s" % (
            client, target, got, want)
    assert r.alive, "luagent died during the %s run" % client
    assert all(r.requests), "some server behind luagent got no request: %s" % r.requests


@pytest.mark.parametrize("client", list(CLIENTS))
def test_client_sees_luagent_as_memcached(runs, client):
    """Cell by cell: luagent's result is memcached's, or EXPLAINED says why not."""
    r = client_run(runs, client)
    direct = dict(r.direct_results)
    unexplained, stale = [], []
    for step, got in r.via:
        differs = got != direct.get(step)
        explained = (client, step) in EXPLAINED
        if differs and not explained:
            unexplained.append("%s: luagent %r, memcached %r" % (step, got, direct.get(step)))
        if explained and not differs:
            stale.append(step)
    assert not unexplained, "%s (%s) sees luagent differ from memcached:\n  %s" % (
        client, r.name, "\n  ".join(unexplained))
    assert not stale, "EXPLAINED lists %s for %s, but the results are the same now" % (
        stale, client)


def cell(text):
    return "`%s`" % text.replace("|", "\\|").replace("`", "'")


def render_table(all_runs):
    clients = list(CLIENTS)
    notes = []
    same = total = 0
    rows = []
    for i, step in enumerate(steps()):
        row = [step]
        for c in clients:
            r = all_runs[c]
            via, direct = r.via[i][1], r.direct_results[i][1]
            if via == "n/a":
                row.append("n/a")
                continue
            total += 1
            if via == direct:
                same += 1
                row.append(cell(via))
                continue
            reason = EXPLAINED.get((c, step), "NOT EXPLAINED")
            if reason not in notes:
                notes.append(reason)
            row.append("%s, memcached: %s (%d)" % (cell(via), cell(direct),
                                                   notes.index(reason) + 1))
        rows.append("| " + " | ".join(row) + " |")
    head = ["| step | " + " | ".join(CLIENTS[c][0] for c in clients) + " |",
            "|---" * (len(clients) + 1) + "|"]
    versions = "; ".join(all_runs[c].name for c in clients)
    text = [TABLE_BEGIN, "",
            "Clients: %s." % versions, "",
            "luagent (over %d memcached servers, `-k`) gave the same result as a direct "
            "memcached in %d of %d cells; each other cell shows both results and the "
            "reason below it. `n/a`: the client has no such call." % (BACKENDS, same, total),
            ""] + head + rows + [""]
    text += ["%d. %s" % (n + 1, reason) for n, reason in enumerate(notes)]
    text += ["", TABLE_END]
    return "\n".join(text) + "\n"


def test_protocol_md_shows_this_table(runs):
    all_runs, errors = runs
    if errors:
        pytest.fail("client runs failed: %s" % sorted(errors))
    table = render_table(all_runs)
    doc = PROTOCOL_MD.read_text()
    begin, end = doc.find(TABLE_BEGIN), doc.find(TABLE_END)
    assert 0 <= begin < end, "docs/protocol.md lacks the real-client table markers"
    new = doc[:begin] + table + doc[end + len(TABLE_END) + 1:]
    if new != doc:
        PROTOCOL_MD.write_text(new)
        pytest.fail("docs/protocol.md's real-client table was not what this run produced; "
                    "it has been rewritten: review and commit it")


def test_version_line_reads_as_memcached_version(memcached, luagent, raw_client):
    """`version`: the memcached version stands alone as the second word, as in
    memcached's own line, so that clients which split the line on spaces read it
    (the npm memcached package takes the last x.y.z of that word), and luagent's
    version follows as the third."""
    direct = raw_client(memcached()).call(b"version\r\n").split()
    lg = luagent(servers=[memcached()])
    via = raw_client(lg).call(b"version\r\n").split()
    assert direct[0] == via[0] == b"VERSION"
    assert re.fullmatch(rb"\d+\.\d+\.\d+", direct[1]), direct
    assert re.fullmatch(rb"\d+\.\d+\.\d+", via[1]), "version word %r" % via[1]
    ours = subprocess.run([str(LUAGENT), "--version"], capture_output=True,
                          timeout=10).stdout.split()[1]
    assert via[2:] == [b"luagent-" + ours], via
    assert raw_client(lg).stats()["version"] == b" ".join(via[1:]).decode()


# PHP sessions over the text protocol: two PHP processes share one session
# through luagent, its lock serialising them, as through a direct memcached.
# (php-memcached's default ini, binary protocol, is in test_binary_clients.py.)
# Each: the ini for an address, and the key the session is stored under.
PHP_SESSION_HANDLERS = {
    # The older extension: save_path is a list of URLs; locking on by default.
    "php-memcache": (lambda addr: php_ini("memcache", "tcp://" + addr),
                     SESSION_ID),
    # php-memcached told to speak text (its default is binary); locking on.
    "php-memcached, text": (lambda addr: php_ini("memcached", addr, [
        "memcached.sess_binary_protocol=0", "memcached.sess_locking=1"]),
                            "memc.sess.key." + SESSION_ID),
}


@pytest.mark.parametrize("handler", list(PHP_SESSION_HANDLERS))
def test_php_sessions_text_protocol(memcached, luagent, tmp_path, handler):
    ini_for, key = PHP_SESSION_HANDLERS[handler]
    servers = [memcached() for _ in range(BACKENDS)]
    lg = luagent(servers=servers)
    direct = memcached(extra=["-I", "1m"])
    for target in ("%s:%d" % (HOST, lg.port), direct.addr):
        assert_shared(*php_session_run(tmp_path, ini_for(target)))
    assert any(s.present([key]) for s in servers), "the session is not on a server"
    stats = lg.stats()
    assert int(stats.get("binary_requests", 0)) == 0, "%s spoke binary" % handler
    assert lg.alive()
