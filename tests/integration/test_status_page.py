"""
The status page at / on the --metrics port (docs/metrics.md, "Status page"):
loaded in a real headless Chromium, whose rendered text (innerText, after
layout) must name every server `up` or `down` with its error rate, the hit
ratio, the policy's generation and checksum, and the route and pool counters;
a memcached killed during the test must show as down once traffic to it
fails, by the page's own refresh, with nobody reloading it. Over plain HTTP,
the page must reference nothing outside the luagent that serves it.
"""
import html.parser
import re
import shutil
import time
import urllib.request

import pytest

from conftest import HOST, free_port, set_cmd
from test_policy import write_policy
from test_stats import stats_group

REFRESH_S = 5               # STATUSPAGE_REFRESH_S

# Two servers that stay down a minute once one request fails, so the state
# the page shows cannot flip back while the test looks.
POLICY = """
local lg = require "luagent"
local main = lg.pool{ name = "main&co<1>", servers = @SERVERS@,
                      failure_limit = 1, retry_after_ms = 60000 }
return lg.policy{ route = lg.by_op{ read = main, default = main } }
"""


def fetch(port, path="/"):
    with urllib.request.urlopen("http://%s:%d%s" % (HOST, port, path), timeout=10) as r:
        return r.status, r.headers, r.read().decode("utf-8")


def sections(text):
    """{heading: [cells of each table row]} of a page's innerText: a line
    without a tab is a heading ("Servers: 2 up, 0 down" is "Servers"), a line
    with tabs a table row."""
    out, current = {}, []
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("\t")]
        if len(cells) == 1:
            current = out.setdefault(cells[0].split(":")[0], [])
        else:
            current.append(cells)
    return out


def pairs(rows):
    """{name: value} of a two-column table."""
    return {r[0]: r[1] for r in rows}


def columns(rows):
    """{first cell: {column: cell}} of a table whose first row is its header."""
    header = rows[0]
    return {r[0]: dict(zip(header, r)) for r in rows[1:]}


@pytest.fixture
def status(memcached, luagent, raw_client, tmp_path):
    """(luagent, its client, the metrics port, the two servers)."""
    a, b = memcached(), memcached()
    servers = "{ %s }" % ", ".join('"%s"' % m.addr for m in (a, b))
    pol = write_policy(tmp_path, "status.lua", POLICY, SERVERS=servers)
    mport = free_port()
    lg = luagent("-t", "2", "-c", pol, "--metrics", "%s:%d" % (HOST, mport))
    return lg, raw_client(lg), mport, (a, b)


@pytest.fixture
def browser(tmp_path):
    if shutil.which("chromium") is None:
        pytest.fail("chromium is not installed (scripts/deps.sh installs it)")
    from browser import Browser
    b = Browser(tmp_path)
    yield b
    b.close()


def traffic(client, keys):
    """Sets then gets of keys, and gets of as many keys never set."""
    for k in keys:
        assert client.call(set_cmd(k, "v")) == b"STORED\r\n"
    for k in keys:
        client.send(("get %s missing:%s\r\n" % (k, k)).encode())
        client.read_values()


def test_page_in_chromium_shows_a_killed_server_down(status, browser):
    lg, client, mport, (a, b) = status
    traffic(client, ["k:%d" % i for i in range(40)])
    st = lg.stats()

    browser.navigate("http://%s:%d/" % (HOST, mport))
    page = browser.wait_for(lambda s: "Servers:" in s["text"], "the servers", 30)
    text = page["text"]
    assert re.search(r"^luagent \S+$", text, re.M), text
    page_sections = sections(text)
    policy = pairs(page_sections["Policy"])
    assert policy["checksum"] == st["policy_checksum"]
    assert policy["generation"] == st["config_generation"]
    assert policy["file"] == st["policy"]
    assert (int(st["get_hits"]), int(st["get_misses"])) == (40, 40)
    hit_ratio = pairs(page_sections["Traffic"])["hit ratio"]
    assert hit_ratio == "50.00% (40 hits, 40 misses)", hit_ratio
    assert "Servers: 2 up, 0 down" in text
    before = columns(page_sections["Servers"])
    assert set(before) == {a.addr, b.addr}, text
    for m in (a, b):
        row = before[m.addr]
        assert row["state"] == "up", row
        assert int(row["requests"]) > 0 and row["error rate"] == "0.00%", row
        assert re.match(r"^\d+(\.\d)? (µs|ms)$", row["p99"]), row
    # Route and pool counters; the pool's name is text, not markup, in the
    # browser too.
    requests = 40 + 40 * 2                      # 40 sets, 40 gets of two keys
    routes = columns(page_sections["Routes"])
    assert routes["by_op#1"]["type"] == "by_op", routes
    assert routes["by_op#1"]["requests"] == str(requests), routes
    assert routes["main&co<1>"]["type"] == "pool", routes
    assert routes["main&co<1>"]["requests"] == str(requests), routes
    pool = columns(page_sections["Pools"])["main&co<1>"]
    assert (pool["servers"], pool["distribution"], pool["requests"]) == \
        ("2", "ketama", str(requests)), pool

    # Kill b, then send keys until a request to b has failed and b is marked down.
    b.kill()
    for i in range(200):
        client.call(("get after:%d\r\n" % i).encode(), "get")
        if stats_group(lg, "servers")[b.addr]["state"] == "down":
            break
    assert stats_group(lg, "servers")[b.addr]["state"] == "down", "b never marked down"

    # The page refreshes itself: the open page shows b down without a navigation.
    after = browser.wait_for(lambda s: s["origin"] != page["origin"]
                             and "Servers: 1 up, 1 down" in s["text"],
                             "b down after its own refresh", 4 * REFRESH_S)
    now = columns(sections(after["text"])["Servers"])
    assert now[b.addr]["state"] == "down", now
    assert now[a.addr]["state"] == "up", now
    assert now[b.addr]["error rate"] not in ("0.00%", "-"), now
    assert int(now[b.addr]["mark-downs"]) >= 1, now


class Links(html.parser.HTMLParser):
    """Every URL-valued attribute of a document."""

    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("href", "src", "action", "srcset", "poster", "data", "xlink:href"):
                self.urls.append((tag, name, value))


def test_page_over_http_has_no_external_url(status):
    lg, client, mport, _ = status
    traffic(client, ["h:%d" % i for i in range(5)])
    code, headers, body = fetch(mport)
    assert code == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp, csp
    # Nothing fetched from anywhere: the only link is the metrics next door.
    parser = Links()
    parser.feed(body)
    assert parser.urls == [("a", "href", "/metrics")], parser.urls
    assert not re.search(r"(?i)(https?:|//[a-z0-9]|url\(|@import|<script|<link|<img|<iframe)",
                         body), body
    assert re.search(r'<meta http-equiv="refresh" content="%d">' % REFRESH_S, body)
    # The policy's names arrive escaped.
    assert "main&amp;co&lt;1&gt;" in body and "main&co<1>" not in body
    # HEAD answers without a body, other methods are refused.
    req = urllib.request.Request("http://%s:%d/" % (HOST, mport), method="HEAD")
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200 and r.read() == b""
    req = urllib.request.Request("http://%s:%d/" % (HOST, mport), data=b"", method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 405


HOT_POLICY = """
local lg = require "luagent"
local main = lg.pool{ name = "main", servers = @SERVERS@ }
return lg.policy{ route = main,
                  settings = { hotkeys_metrics = "truncate", hotkeys_metrics_key_bytes = 8,
                               hotkeys_sample = 1 } }
"""


def test_page_shows_hot_keys_only_when_they_may_be_shown(status, memcached, luagent,
                                                         raw_client, tmp_path):
    """Keys may be private: the page hides them as /metrics does, until the
    policy's settings.hotkeys_metrics lets them show (cut to 8 bytes here)."""
    lg, client, mport, _ = status
    traffic(client, ["p:%d" % i for i in range(5)])
    for _ in range(200):
        client.send(b"get p:1\r\n")
        client.read_values()
    assert "<h2>Hot keys</h2>\n<p>Hidden: keys may be private." in fetch(mport)[2]

    m = memcached()
    pol = write_policy(tmp_path, "hot.lua", HOT_POLICY, SERVERS='{ "%s" }' % m.addr)
    hport = free_port()
    hot = luagent("-t", "1", "-c", pol, "--metrics", "%s:%d" % (HOST, hport))
    c = raw_client(hot)
    assert c.call(set_cmd("hotkey:secret-tail", "v")) == b"STORED\r\n"
    body = ""
    deadline = time.monotonic() + 15    # the top list is published once a second
    while time.monotonic() < deadline:
        for _ in range(200):
            c.send(b"get hotkey:secret-tail\r\n")
            c.read_values()
        body = fetch(hport)[2]
        if "<td>hotkey:s</td>" in body:
            break
        time.sleep(0.2)
    assert "<tr><td>1</td><td>hotkey:s</td>" in body, body
    assert "secret-tail" not in body
    assert "<td>main</td><td>%s</td>" % m.addr in body
