"""
The operator docs stay true: every `stats` counter luagent reports is described
in docs/operating.md, and the worked twemproxy conversion in docs/migrating.md
loads and routes as the page shows.
"""
import re
import subprocess
import time

from conftest import LUAGENT, REPO

OPERATING = REPO / "docs" / "operating.md"
MIGRATING = REPO / "docs" / "migrating.md"


def test_every_stats_counter_is_documented(memcached, luagent, raw_client):
    # a server that answers the background poll, so its figures' lines show too
    lg = luagent("--server-stats-interval", "1", servers=[memcached()])
    c = raw_client(lg)
    end = time.monotonic() + 10
    while c.stats().get("servers_stats_answered") != "1" and time.monotonic() < end:
        time.sleep(0.02)
    names = c.stats().keys()
    doc = OPERATING.read_text()
    missing = []
    for name in names:
        if name.startswith("server:"):
            name = "server:<host:port>:" + name.rsplit(":", 1)[1]
        if "`%s`" % name not in doc:
            missing.append(name)
    assert not missing, "stats counters missing from docs/operating.md: %s" % missing


def test_metrics_section_points_at_the_metrics_reference():
    doc = OPERATING.read_text()
    section = re.search(r"^## Metrics\n(.*?)^## ", doc, re.M | re.S)
    assert section and "(metrics.md)" in section.group(1) and "--metrics" in section.group(1)
    assert (REPO / "docs" / "metrics.md").exists()


def test_migrating_worked_example_checks_and_routes(tmp_path):
    doc = MIGRATING.read_text()
    lua = re.search(r"```lua\n(.*?)```", doc, re.S).group(1)
    policy = tmp_path / "web.lua"
    policy.write_text(lua)
    p = subprocess.run([str(LUAGENT), "--check", str(policy)], capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr.decode()
    shown = re.search(r"\$ luagent --route \S+ (\"get [^\"]+\")\n((?:.*\n){3})", doc)
    assert shown, "the worked example shows a --route run"
    p = subprocess.run([str(LUAGENT), "--route", str(policy), shown.group(1).strip('"')],
                       capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr.decode()
    got = [l.strip() for l in p.stdout.decode().splitlines()]
    want = [l.strip() for l in shown.group(2).splitlines()]
    assert got == want
