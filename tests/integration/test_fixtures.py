"""
The fixtures' own promises about readiness:

- the luagent fixture returns once every address accepts, checked against a
  stand-in for luagent that is slow on purpose: it listens on -p at once and
  on its other addresses (--tls-port, -f, --metrics) only a while later, as a
  loaded machine can make luagent do between two listen() calls;
- a process is ready when it listens itself: a port that another program took
  after free_port() (other test runs share the machine) accepts connections
  too, while the process under test exits with "Address already in use".
"""
import os
import socket
import sys

import pytest

import conftest
from conftest import HOST, LUAGENT, Proc, StartError, free_port, try_connect

SLOW_START = r'''
import signal, socket, sys, time
args = sys.argv[1:]
def opt(name):
    return args[args.index(name) + 1] if name in args else None
def tcp(host, port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, int(port)))
    s.listen(16)
    return s
held = [tcp(opt("-l"), opt("-p"))]
time.sleep(0.5)     # the stand-in's slowness, not a wait in a test
held.append(tcp(opt("-l"), opt("--tls-port")))
u = socket.socket(socket.AF_UNIX)
u.bind(opt("-f"))
u.listen(16)
held.append(u)
host, _, port = opt("--metrics").rpartition(":")
held.append(tcp(host, port))
signal.pause()
'''


def test_luagent_fixture_waits_for_every_address(luagent, tmp_path, monkeypatch):
    fake = tmp_path / "slow-luagent"
    fake.write_text("#!%s\n%s" % (sys.executable, SLOW_START))
    os.chmod(fake, 0o755)
    monkeypatch.setattr(conftest, "LUAGENT", fake)
    tport, mport, sock = free_port(), free_port(), str(tmp_path / "lg.sock")
    lg = luagent("--tls-port", tport, "--metrics", "%s:%d" % (HOST, mport), unix=sock)
    for addr in ((HOST, lg.port), (HOST, tport), sock, (HOST, mport)):
        s = try_connect(addr)
        assert s is not None, "%r refused right after the fixture returned" % (addr,)
        s.close()


def test_a_port_someone_else_listens_on_is_not_readiness(tmp_path):
    port = free_port()
    other = socket.socket()
    other.bind((HOST, port))
    other.listen(16)
    p = Proc("luagent", [LUAGENT, "-D", "-l", HOST, "-p", port, "-s", "127.0.0.1:1"],
             tmp_path / "luagent.log")
    try:
        with pytest.raises(StartError, match="in use"):
            p.wait_listening((HOST, port))
    finally:
        p.stop()
        other.close()
