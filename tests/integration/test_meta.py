"""
Meta protocol (mg, ms, md, ma, me, mn) through luagent, differential: the same
bytes go to luagent over three fresh servers and to one fresh direct memcached,
and the replies must match byte for byte once the values that depend on time
and on the server (cas, ttl, last access) are normalised. Then what only a
proxy has: keys spread over servers, quiet mode per request, base64 keys routed
by their decoded bytes, keys mapped back through lg.rewrite, by_op's meta names,
and failing servers.
"""
import base64
import random
import re

import pytest

from conftest import Ketama, RawClient, parse_values, set_cmd

from test_policy import fixture_policy
from test_tls import pki, tls_memcached  # noqa: F401 (pki is a fixture)

# Values that differ between two servers fed the same stream.
FLAG_NUM_RE = re.compile(rb"(?<= )([clt])(\d+)(?= |$)")
VALUE_CAS_RE = re.compile(rb"^(VALUE \S+ \d+ \d+) \d+$")
ME_NUM_RE = re.compile(rb"\b(exp|la|cas)=-?\d+")


def normalise(unit):
    """One meta reply unit with cas, ttl and last-access values blanked."""
    line, sep, rest = unit.partition(b"\r\n")
    if line.startswith(b"ME "):
        line = ME_NUM_RE.sub(lambda m: m.group(1) + b"=<n>", line)
    elif line.startswith(b"VALUE "):
        line = VALUE_CAS_RE.sub(rb"\1 <cas>", line)
    elif line[:2] in (b"HD", b"VA", b"EN", b"NF", b"NS", b"EX"):
        line = FLAG_NUM_RE.sub(lambda m: m.group(1) + b"<n>", line)
    return line + sep + rest


def read_unit(c):
    """One reply unit of any kind: a line, plus the data block of VA / VALUE."""
    line = c.read_line()
    if line.startswith(b"VA "):
        return line + c.recv_exact(int(line.split()[1]) + 2)
    if line.startswith(b"VALUE "):
        return line + c.recv_exact(int(line.split()[3]) + 2)
    return line


def exchange(c, data, mns=1):
    """Send data followed by "mn"; every unit up to the mns-th MN, normalised."""
    c.send(data + b"mn\r\n")
    units = []
    while mns > 0:
        u = read_unit(c)
        units.append(normalise(u))
        if u == b"MN\r\n":
            mns -= 1
    return units


def b64(key):
    return base64.b64encode(key if isinstance(key, bytes) else key.encode())


def ms(key, value, flags=b""):
    key = key if isinstance(key, bytes) else key.encode()
    value = value if isinstance(value, bytes) else value.encode()
    return b"ms %s %d%s\r\n%s\r\n" % (key, len(value), b" " + flags if flags else b"", value)


@pytest.fixture
def pair(cluster, memcached, raw_client):
    """(luagent client, direct client, luagent, its servers) over fresh servers."""
    lg, servers = cluster(3, "-k")
    direct = memcached()
    return raw_client(lg), raw_client(direct), lg, servers


def same(pair, data, mns=1):
    p, d = pair[0], pair[1]
    got, want = exchange(p, data, mns), exchange(d, data, mns)
    assert got == want, "luagent %r\ndirect  %r\nfor %r" % (got, want, data[:300])
    return got


def spread(servers, keys):
    """Which server (index) holds each key, asked directly with mg."""
    where = {}
    for i, m in enumerate(servers):
        with m.client() as c:
            for k in keys:
                if c.call(b"mg %s\r\n" % k.encode()) == b"HD\r\n":
                    where[k] = i
    return where


# --------------------------------------------------------------------------
# Differential: each command and its flag families
# --------------------------------------------------------------------------

KEYS = ["meta:%d" % i for i in range(12)]


def test_ms_modes_and_flags(pair):
    steps = b"".join([
        ms("m:a", "hello", b"T0 F7"),
        ms("m:a", "x", b"ME"),                  # add on an existing key: NS
        ms("m:b", "x", b"ME k O1"),             # add on a new key
        ms("m:a", "+tail", b"MA"),              # append
        ms("m:a", "head+", b"MP"),              # prepend
        ms("m:nope", "x", b"MR"),               # replace a missing key: NS
        ms("m:a", "r", b"MR F3 c k O77"),       # replace, cas and key returned
        ms("m:a", "s", b"MS T100 F1"),
        ms("m:c", "bin\r\nary\x00", b""),       # CRLF and NUL in the data
        ms("m:d", "", b"F0"),                   # empty value
        ms("m:a", "z", b"C99999"),                  # stale cas: EX
        ms("m:nope", "z", b"C99999"),               # cas on a missing key: NF
        ms("m:a", "z", b"I"),                   # I without a cas is ignored
        b"mg m:a v f t s\r\nmg m:b v k\r\nmg m:c v s\r\nmg m:d v f\r\n",
    ])
    same(pair, steps)


def test_ms_with_cas_from_mg(pair):
    """A cas read through luagent is valid for a write through luagent."""
    p = pair[0]
    assert exchange(p, ms("cas:k", "one")) == [b"HD\r\n", b"MN\r\n"]
    line = p.call(b"mg cas:k c\r\n")
    cas = re.match(rb"HD c(\d+)\r\n", line).group(1)
    assert exchange(p, ms("cas:k", "two", b"C" + cas)) == [b"HD\r\n", b"MN\r\n"]
    assert exchange(p, ms("cas:k", "three", b"C" + cas)) == [b"EX\r\n", b"MN\r\n"]
    assert p.call(b"md cas:k C" + cas + b"\r\n") == b"EX\r\n"


def test_mg_flags(pair):
    setup = b"".join(ms(k, "v-" + k, b"F%d T500" % i) for i, k in enumerate(KEYS))
    same(pair, setup)
    asks = b"".join(b"mg %s %s\r\n" % (k.encode(), f) for k in KEYS for f in (
        b"", b"v", b"v k", b"k v c f t s O123", b"s f", b"h l", b"u v", b"T50 v t")) + \
        b"mg meta:none v\r\nmg meta:none v k O9\r\nmg meta:none\r\n"
    same(pair, asks)
    # mg N (vivify on miss) and R (recache): win flags come back the same
    same(pair, b"mg viv:1 N30 v t c\r\nmg viv:1 N30 v t\r\nmg meta:1 R600 v\r\n")


def test_md_flags(pair):
    same(pair, b"".join(ms(k, "x") for k in KEYS))
    same(pair, b"".join(b"md %s%s\r\n" % (k.encode(), f) for k, f in zip(KEYS, [
        b"", b" k", b" O5 k", b" C99999", b" I T30", b" q", b" q k", b" x", b" I",
        b"", b" k O1", b""])) + b"md meta:none\r\nmd meta:none k O2\r\n")
    same(pair, b"".join(b"mg %s v\r\n" % k.encode() for k in KEYS))


def test_ma_flags(pair):
    same(pair, ms("n:1", "10") + ms("n:2", "5") + ms("n:txt", "abc"))
    same(pair, b"ma n:1\r\nma n:1 v\r\nma n:1 D5 v\r\nma n:1 MD D3 v t c k O4\r\n"
               b"ma n:2 M- D100 v\r\nma n:2 M+ v\r\nma n:2 MI D18446744073709551615 v\r\n"
               b"ma n:none\r\nma n:none v k\r\nma n:viv N0 J42 v\r\nma n:viv N0 J42 v\r\n"
               b"ma n:txt v\r\nma n:1 C99999 v\r\nma n:1 MX\r\n")


def test_me_and_mn(pair):
    same(pair, ms("dbg:1", "value", b"T0"))
    same(pair, b"me dbg:1\r\nme dbg:none\r\nme dbg:1 extra words\r\n"
               b"me %s b\r\nmn\r\nmn with words\r\n" % b64("dbg:1"), mns=3)


# --------------------------------------------------------------------------
# Differential: bad requests
# --------------------------------------------------------------------------

BAD = [
    b"mg\r\n", b"md\r\n", b"ma\r\n", b"ms\r\n", b"me\r\n", b"mx foo\r\n",
    b"mg foo v v\r\n", b"mg foo x\r\n", b"mg foo q x\r\n", b"mg foo q q\r\n",
    b"mg foo noreply\r\n", b"mg foo \xc3\xa9\r\n",
    b"mg Zm9 b v\r\n", b"mg foo k b\r\n", b"mg Zm9 b Tabc\r\n",
    b"mg foo Tabc\r\n", b"mg foo N\r\n", b"mg foo F\r\n", b"mg foo Mxx\r\n",
    b"mg foo Jx\r\n", b"mg foo Dx\r\n", b"mg foo Cx\r\n",
    b"mg foo O123456789012345678901234567890123\r\n",
    b"mg foo v k c f t s h l O1 T1 u P L q I C1 D1 J1\r\n",
    b"md foo x\r\n", b"md foo k k\r\n", b"md Zm9 b\r\n", b"md foo Tx\r\n",
    b"md foo v k c f t s h l O1 T1 u P L q I C1 D1 J1\r\n",
    b"ma foo Dabc\r\n", b"ma foo MX\r\n", b"ma foo Jx\r\n", b"ma foo q q\r\n",
    b"me Zm9 b\r\n",
    b"mg " + b"a" * 251 + b" v\r\n", b"md " + b"a" * 251 + b"\r\n",
    b"ma " + b"a" * 251 + b"\r\n", b"me " + b"a" * 251 + b"\r\n",
    # ms errors after <datalen>: the block is dropped with the line
    b"ms foo 2 x\r\nhi\r\n", b"ms foo 2 q q\r\nhi\r\n", b"ms foo 2 Tabc\r\nhi\r\n",
    b"ms Zm9 2 b\r\nhi\r\n", b"ms foo 2 Mxx\r\nhi\r\n", b"ms foo 2 MX\r\nhi\r\n",
    b"ms foo 2 O123456789012345678901234567890123\r\nhi\r\n",
    # a data block of the wrong size: error, and the rest read as a command
    b"ms foo 2\r\nabc\r\n", b"ms foo 2\r\nh\r\nx\r\n",
]


@pytest.mark.parametrize("req", BAD, ids=range(len(BAD)))
def test_bad_request_same_as_memcached(pair, req):
    same(pair, req)


def test_bad_requests_keep_the_stream(pair):
    """All of them in one pipeline, with good requests in between."""
    same(pair, b"".join(r + ms("ok:%d" % i, "v%d" % i) + b"mg ok:%d v\r\n" % i
                        for i, r in enumerate(BAD)))


@pytest.mark.parametrize("req", [b"ms foo\r\n", b"ms foo abc\r\nhi\r\n",
                                 b"ms foo -1\r\nhi\r\n"])
def test_ms_unknown_length_closes(pair, req):
    """Same error line as memcached, then the connection closes: with no usable
    <datalen> the block cannot be told from the next command (as for set)."""
    p, d = pair[0], pair[1]
    d.send(req)
    want = d.read_line()
    p.send(req + b"mn\r\n")
    assert p.read_line() == want == b"CLIENT_ERROR bad command line format\r\n"
    assert p.read_until_close() == b""


def test_ms_long_key_and_too_many_flags_drop_the_block(pair):
    """memcached reads the data block of these as a command (an extra ERROR);
    luagent drops it, one reply, the stream in step (as for set)."""
    p = pair[0]
    assert exchange(p, b"ms " + b"k" * 251 + b" 2\r\nhi\r\n") == [
        b"CLIENT_ERROR bad command line format\r\n", b"MN\r\n"]
    assert exchange(p, b"ms foo 2 v k c f t s h l O1 T1 u P L q I C1 D1\r\nhi\r\n") == [
        b"CLIENT_ERROR options flags too long\r\n", b"MN\r\n"]


def test_ms_too_large(pair, memcached, luagent, raw_client):
    """Too large: answered by luagent, block dropped, the key's old value gone."""
    p, _d, lg, servers = pair
    big = 1024 * 1024 + 1
    assert exchange(p, ms("big:1", "old")) == [b"HD\r\n", b"MN\r\n"]
    assert exchange(p, b"ms big:1 %d T0\r\n" % big + b"x" * big + b"\r\n") == [
        b"SERVER_ERROR object too large for cache\r\n", b"MN\r\n"]
    assert exchange(p, b"mg big:1 v\r\n") == [b"EN\r\n", b"MN\r\n"]
    # a base64 key: the stale value goes too
    assert exchange(p, ms(b64("big:2"), "old", b"b")) == [b"HD\r\n", b"MN\r\n"]
    assert exchange(p, b"ms %s %d b\r\n" % (b64("big:2"), big) + b"x" * big + b"\r\n") == [
        b"SERVER_ERROR object too large for cache\r\n", b"MN\r\n"]
    assert exchange(p, b"mg big:2 v\r\n") == [b"EN\r\n", b"MN\r\n"]


# --------------------------------------------------------------------------
# Pipelines across servers, quiet mode
# --------------------------------------------------------------------------

def test_mixed_meta_and_classic_pipeline(pair):
    p, d, lg, servers = pair
    keys = ["mix:%d" % i for i in range(60)]
    steps = []
    for i, k in enumerate(keys):
        steps.append(ms(k, "%d" % i, b"F%d" % i) if i % 2 else set_cmd(k, "%d" % i, flags=i))
    steps.append(b"get " + b" ".join(k.encode() for k in keys[:30]) + b"\r\n")
    for i, k in enumerate(keys):
        steps.append([b"mg %s v f k\r\n", b"gets %s\r\n", b"ma %s v\r\n", b"md %s q\r\n",
                      b"incr %s 1\r\n", b"mg %s s v O1\r\n"][i % 6] % k.encode())
    steps.append(b"mn\r\n")
    steps.append(b"get " + b" ".join(k.encode() for k in keys) + b"\r\n")
    got = same(pair, b"".join(steps), mns=2)
    assert len(set(spread(servers, keys).values())) == 3, "keys must span the servers"
    assert got[-1] == b"MN\r\n"


def test_quiet_mode_with_mn_across_servers(pair):
    """Quiet requests whose keys live on three servers: each suppressed
    reply is left out on its own; misses, NS, NF, EX and errors show, in order,
    and mn comes after all of them."""
    p, d, lg, servers = pair
    keys = ["q:%d" % i for i in range(40)]
    data = b"".join(ms(k, "v", b"q") for k in keys)
    assert same(pair, data) == [b"MN\r\n"]
    assert len(set(spread(servers, keys).values())) == 3
    mixed = []
    for i, k in enumerate(keys):
        kb = k.encode()
        mixed.append([b"mg %s v q\r\n" % kb,                # hit: shown
                      b"mg %s-miss v q k\r\n" % kb,          # miss: suppressed
                      ms(k, "x", b"q ME"),                    # NS: shown
                      b"md %s q\r\n" % kb,                   # HD: suppressed
                      b"md %s-miss q\r\n" % kb,              # NF: shown
                      b"ma %s q\r\n" % kb,                   # non-numeric: error shown
                      ms(k, "7", b"q C99999"),                    # EX: shown
                      b"mg %s q x\r\n" % kb][i % 8])          # parse error: shown
    got = same(pair, b"".join(mixed) + b"mn\r\n" + b"".join(mixed), mns=2)
    assert got.count(b"MN\r\n") == 2
    # ma quiet: HD and VA both suppressed
    same(pair, ms("q:n", "1") + b"ma q:n q\r\nma q:n q v\r\nma q:n v\r\n")


# --------------------------------------------------------------------------
# base64 keys
# --------------------------------------------------------------------------

def test_base64_key_lands_where_the_plain_key_does(pair):
    p, d, lg, servers = pair
    ring = Ketama([("127.0.0.1", m.port, 1) for m in servers])
    keys = ["b64:%d" % i for i in range(30)]
    for k in keys:
        assert exchange(p, ms(b64(k), k, b"b")) == [b"HD\r\n", b"MN\r\n"]
    where = spread(servers, keys)
    assert where == {k: ring.server(k) for k in keys}
    for k in keys:
        assert exchange(p, b"mg %s v\r\n" % k.encode()) == [
            b"VA %d\r\n%s\r\n" % (len(k), k.encode()), b"MN\r\n"]
        assert parse_values(p.call(b"get %s\r\n" % k.encode(), "get")) == [
            (k, 0, k.encode(), None)]


def test_binary_keys_differential(pair):
    keys = [bytes([0, 1, 2, i]) for i in range(20)] + [b"\xff\xfe key with spaces"]
    same(pair, b"".join(ms(b64(k), "v%d" % i, b"b k") for i, k in enumerate(keys)))
    same(pair, b"".join(b"mg %s b k v c\r\nme %s b\r\n" % (b64(k), b64(k)) for k in keys))
    same(pair, b"".join(b"ma %s b k\r\nmd %s b k q\r\nmd %s b k\r\n" % ((b64(k),) * 3)
                        for k in keys[:5]))
    # a key stored in plain text and asked in base64 comes back in plain text
    same(pair, ms("plain:1", "p") + b"mg %s b k v\r\nme %s b\r\n" % ((b64("plain:1"),) * 2))


# --------------------------------------------------------------------------
# Policies: rewrite map-back, by_op names
# --------------------------------------------------------------------------

@pytest.fixture
def rewrite_proxy(memcached, luagent, raw_client, tmp_path):
    m1, m2 = memcached(), memcached()
    path = fixture_policy(tmp_path, "meta_rewrite.lua", MAIN=[m1, m2])
    lg = luagent("-c", str(path))
    return raw_client(lg), [m1, m2]


def test_rewrite_maps_returned_keys_back(rewrite_proxy, memcached, raw_client):
    """Through lg.rewrite the servers hold "v2:<rest>", and every key the
    client gets back (k flag, ME line) is the one it sent, in base64 when the
    server says so; the same bytes as a direct memcached holding the client's
    keys."""
    p, (m1, m2) = rewrite_proxy
    d = raw_client(memcached())
    ids = ["%d" % i for i in range(20)]
    steps = b"".join(ms("app:" + i, "v" + i, b"k O%s F3" % i.encode()) for i in ids)
    steps += b"".join(ms(b64(b"app:\x00" + i.encode()), "b" + i, b"b k") for i in ids[:5])
    reads = b"".join(b"mg app:%s k v c O1\r\nme app:%s\r\nma app:%s k\r\n" % ((i.encode(),) * 3)
                     for i in ids)
    reads += b"".join(b"mg %s b k v\r\nme %s b\r\nmd %s b k q\r\nmg %s b k\r\n"
                      % ((b64(b"app:\x00" + i.encode()),) * 4) for i in ids[:5])
    reads += b"md app:1 k\r\nmd app:1 k\r\nmg app:none k v O5\r\n"
    for data in (steps, reads):
        # an ME line's item size counts the stored key, here "v2:" + rest
        got = [re.sub(rb" size=\d+", b"", u) for u in exchange(p, data)]
        want = [re.sub(rb" size=\d+", b"", u) for u in exchange(d, data)]
        assert got == want, "luagent %r\ndirect  %r" % (got, want)
        if data is steps:
            check_rewritten_storage(m1, m2, ids)


def check_rewritten_storage(m1, m2, ids):
    stored = ["v2:" + i for i in ids]
    on1, on2 = spread([m1], stored), spread([m2], stored)
    assert set(on1) | set(on2) == set(stored)
    assert on1 and on2, "rewritten keys span the pool"
    assert spread([m1, m2], ["app:" + i for i in ids]) == {}, \
        "no server may hold the client's key"
    # the binary keys are stored rewritten, as binary items
    for i in ids[:5]:
        enc = b64(b"v2:\x00" + i.encode())
        with m1.client() as c1, m2.client() as c2:
            held = [c.call(b"mg %s b k\r\n" % enc) for c in (c1, c2)]
        assert b"HD k%s b\r\n" % enc in held, held


def test_by_op_meta_command_names(rewrite_proxy):
    p, _servers = rewrite_proxy
    assert exchange(p, ms("ro:1", "v")) == [b"HD\r\n", b"MN\r\n"]
    assert exchange(p, b"mg ro:1 v\r\nme ro:1\r\nmg ro:1 q\r\nmd ro:1 q\r\nmg app:1 v\r\n") == [
        b"SERVER_ERROR mg refused\r\n", b"SERVER_ERROR read refused\r\n",
        b"SERVER_ERROR mg refused\r\n", b"EN\r\n", b"MN\r\n"]


# --------------------------------------------------------------------------
# Failures
# --------------------------------------------------------------------------

def test_dead_server_answers_server_error(memcached, luagent, raw_client):
    alive = memcached()
    dead = memcached()
    lg = luagent("-k", servers=[alive, dead])
    dead.stop()
    c = raw_client(lg)
    ring = Ketama([("127.0.0.1", m.port, 1) for m in (alive, dead)])
    down = next(k for k in ("dead:%d" % i for i in range(100)) if ring.server(k) == 1)
    up = next(k for k in ("dead:%d" % i for i in range(100)) if ring.server(k) == 0)
    err = b"SERVER_ERROR backend unavailable\r\n"
    kd, ku = down.encode(), up.encode()
    got = exchange(c, ms(down, "x", b"q") + b"mg %s v q\r\nmd %s q\r\nma %s q\r\nme %s\r\n"
                   % (kd, kd, kd, kd) + ms(up, "y", b"q") + b"mg %s v\r\n" % ku
                   + b"mg %s b v\r\n" % b64(down))
    assert got == [err, err, err, err, err, b"VA 1\r\n" + b"y\r\n", err, b"MN\r\n"]


def test_hook_sees_the_decoded_key_and_meta_command(memcached, luagent, raw_client, tmp_path):
    """A hook's rewrite applies to meta requests too, base64 keys included:
    the hook sees the decoded key, the server the new key, the client its own."""
    m1, m2, other = memcached(), memcached(), memcached()
    path = fixture_policy(tmp_path, "hook_rewrite.lua", MAIN=[m1, m2], OTHER=other)
    c = raw_client(luagent("-c", str(path)))
    assert exchange(c, ms("acct/1", "one", b"k") + ms(b64("acct/2"), "two", b"b k")
                    + ms("plain", "p", b"k")) == [
        b"HD kacct/1\r\n", b"HD k%s b\r\n" % b64("acct/2"), b"HD kplain\r\n", b"MN\r\n"]
    assert spread([m1, m2], ["a:1"]) and spread([other], ["plain"])
    got = exchange(c, b"mg acct/1 k v\r\nmg %s b k v\r\nme acct/1\r\nmd acct/1 q k\r\n"
                   b"mg acct/1 v k\r\n" % b64("acct/2"))
    assert got[:2] == [b"VA 3 kacct/1\r\none\r\n", b"VA 3 k%s b\r\ntwo\r\n" % b64("acct/2")]
    assert re.fullmatch(rb"ME acct/1 exp=<n> la=<n> cas=<n> fetch=yes cls=1 size=\d+\r\n",
                        got[2]), got[2]
    assert got[3:] == [b"EN kacct/1\r\n", b"MN\r\n"]


def test_backup_servers(memcached, luagent, raw_client):
    """-b: meta writes reach the main and the backup server; mg falls back to
    the backup on a miss (EN), as get does."""
    main, backup = memcached(), memcached()
    c = raw_client(luagent(servers=[main], backups=[backup]))
    assert exchange(c, ms("bk:1", "v", b"q") + ms("bk:2", "w", b"k")) == [b"HD kbk:2\r\n", b"MN\r\n"]
    for m in (main, backup):
        assert spread([m], ["bk:1", "bk:2"]) == {"bk:1": 0, "bk:2": 0}
    with main.client() as direct:
        assert direct.call(b"md bk:1\r\n") == b"HD\r\n"
    assert exchange(c, b"mg bk:1 v k\r\nmg bk:none v q\r\nmd bk:2 q\r\nmg bk:2 v\r\n") == [
        b"VA 1 kbk:1\r\nv\r\n", b"EN\r\n", b"MN\r\n"]


# --------------------------------------------------------------------------
# Differential on random streams
# --------------------------------------------------------------------------

RAND_KEYS = ["rk:%d" % i for i in range(16)]
# Counters live apart: incr/ma rewrite a value in place only when no other
# reference to the item is held at that instant, else they store a new item
# (not fetched, not binary, not stale). That depends on when the server
# writes its earlier replies, so two direct memcacheds fed the same stream
# differ on it; the keys that me, h, l and I look at never see arithmetic.
COUNTER_KEYS = ["rc:%d" % i for i in range(4)]
RAND_FLAGS = {
    "mg": ["v", "k", "c", "f", "t", "s", "h", "l", "q", "O7", "u", "T1000", "T-1", "N100",
           "R30", "E", "x", "Tx"],
    "ms": ["k", "c", "q", "O9", "F5", "T0", "T1000", "T-1", "ME", "MA", "MP", "MR", "MS",
           "I", "C123456789", "MX", "F", "z"],
    "md": ["k", "q", "O3", "C123456789", "I", "T30", "x"],
    "ma": ["v", "k", "t", "c", "q", "O1", "N0", "J5", "D3", "MD", "MI", "M+", "C123456789",
           "Dx", "MQ"],
    "counter": ["v", "k", "c", "f", "s", "q", "O2"],
}


def random_flags(rng, names, key):
    flags = rng.sample(names, rng.randint(0, 4))
    if rng.random() < 0.15:
        key, flags = b64(key).decode(), flags + ["b"]
    rng.shuffle(flags)
    return key, (" " + " ".join(flags)) if flags else ""


def random_counter_request(rng):
    key = rng.choice(COUNTER_KEYS)
    kind = rng.random()
    if kind < 0.4:
        key, tail = random_flags(rng, RAND_FLAGS["ma"], key)
        return b"ma %s%s\r\n" % (key.encode(), tail.encode())
    if kind < 0.6:
        return b"incr %s 2\r\n" % key.encode()
    if kind < 0.8:
        key, tail = random_flags(rng, RAND_FLAGS["counter"], key)
        return b"mg %s%s\r\n" % (key.encode(), tail.encode())
    value = rng.choice(["1", "42", "abc"])
    return b"ms %s %d\r\n%s\r\n" % (key.encode(), len(value), value.encode())


def random_request(rng):
    kind = rng.random()
    key = rng.choice(RAND_KEYS)
    if kind < 0.65:
        cmd = rng.choice(["mg", "mg", "ms", "ms", "md"])
        key, tail = random_flags(rng, RAND_FLAGS[cmd], key)
        if cmd == "ms":
            value = rng.choice(["1", "42", "abc", "", "x" * rng.randint(1, 300), "a\r\nb"])
            return b"ms %s %d%s\r\n%s\r\n" % (key.encode(), len(value), tail.encode(),
                                               value.encode())
        return b"%s %s%s\r\n" % (cmd.encode(), key.encode(), tail.encode())
    if kind < 0.80:
        return random_counter_request(rng)
    if kind < 0.85:
        return b"me %s\r\n" % key.encode()
    if kind < 0.90:
        return b"mn\r\n"
    if kind < 0.95:
        return set_cmd(key, rng.choice(["7", "text"]))
    return b"get %s\r\n" % " ".join(rng.sample(RAND_KEYS, 3)).encode()


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_random_meta_streams(pair, seed):
    rng = random.Random(seed)
    stream = [random_request(rng) for _ in range(400)]
    for start in range(0, len(stream), 100):
        chunk = stream[start:start + 100]
        same(pair, b"".join(chunk), mns=1 + sum(r == b"mn\r\n" for r in chunk))


def test_meta_through_a_tls_backend(memcached, luagent, raw_client, pki):
    """ms data blocks end TLS records as storage commands do (memcached -Z
    would stall otherwise); quiet requests and their mn go through as well."""
    m = tls_memcached(memcached, pki)
    c = raw_client(luagent("--backend-tls-ca", pki.path("ca"), servers=[m]))
    big = b"v" * 40000          # more than one TLS record
    data = b"".join(ms("tls:%d" % i, big if i % 2 else b"small", b"q" if i % 3 else b"")
                    for i in range(12))
    assert exchange(c, data) == [b"HD\r\n"] * 4 + [b"MN\r\n"]
    got = exchange(c, b"".join(b"mg tls:%d s v q\r\n" % i for i in range(14)))
    assert got == [b"VA %d s%d\r\n%s\r\n" % (len(v), len(v), v)
                   for v in (big if i % 2 else b"small" for i in range(12))] + [b"MN\r\n"]


def test_meta_requests_counted_like_memcached(pair):
    """mg and ms move cmd_get and cmd_set by what they move on a memcached of
    its own; md moves luagent's cmd_delete (memcached has none)."""
    p, d = pair[0], pair[1]
    names = ("cmd_get", "cmd_set")
    before = [{n: int(c.stats()[n]) for n in names} for c in (p, d)]
    deletes = int(p.stats()["cmd_delete"])
    for c in (p, d):
        exchange(c, ms("count:1", "v") + ms("count:2", "w")
                 + b"mg count:1 v\r\nmg count:2 v\r\nmg count:3 v\r\nmd count:1\r\n")
    moved = [{n: int(c.stats()[n]) - b[n] for n in names} for c, b in zip((p, d), before)]
    assert moved[0] == moved[1] == {"cmd_get": 3, "cmd_set": 2}, moved
    assert int(p.stats()["cmd_delete"]) - deletes == 1
