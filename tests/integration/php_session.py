"""
PHP sessions shared by two PHP processes through one server address: the
helper of the session tests (test_binary_clients.py: php-memcached's default,
binary ini; test_real_clients.py: the text protocol, with php-memcached and
with the older php-memcache extension).

Each process plays ROUNDS web requests on one session id: open the session
(taking its lock), add one to a counter and its own name to a list, hold the
lock a moment, write it back. With the lock working, no increment is lost.
"""
import json
import subprocess

from conftest import HOST

TOOL_TIMEOUT = 120
ROUNDS = 8
SESSION_ID = "shared-session-0001"

SCRIPT = r"""<?php
// php [-d ini...] session.php ROUNDS NAME
ini_set('session.use_cookies', '0');
ini_set('session.cache_limiter', '');
session_id('%s');
$ok = 0;
for ($i = 0; $i < (int)$argv[1]; $i++) {
    if (!@session_start()) {
        echo "session_start failed: ", error_get_last()['message'] ?? '', "\n";
        continue;
    }
    $_SESSION['n'] = ($_SESSION['n'] ?? 0) + 1;
    $_SESSION['who'][] = $argv[2];
    usleep(20000);          // hold the lock while the other process waits
    session_write_close();
    $ok++;
}
echo json_encode(['ok' => $ok, 'n' => $_SESSION['n'] ?? null,
                  'who' => array_count_values($_SESSION['who'] ?? [])]), "\n";
""" % SESSION_ID


def php_ini(handler, save_path, extra=()):
    """php's -d arguments for a save handler, its save_path and other settings."""
    argv = ["-d", "session.save_handler=" + handler, "-d", "session.save_path=" + save_path]
    for setting in extra:
        argv += ["-d", setting]
    return argv


def run_php(argv):
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=TOOL_TIMEOUT)
    assert p.returncode == 0, "%s exited %d\nstdout: %s\nstderr: %s" % (
        argv, p.returncode, p.stdout.decode()[-2000:], p.stderr.decode()[-2000:])
    return p.stdout.decode()


def php_session_run(tmp_path, ini):
    """Two processes, ROUNDS requests each, on the shared session, then one more
    request that reads it: (each process's last line, the final session)."""
    script = tmp_path / "session.php"
    script.write_text(SCRIPT)
    procs = [subprocess.Popen(["php"] + ini + [str(script), str(ROUNDS), name],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
             for name in ("alpha", "beta")]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=TOOL_TIMEOUT)
        assert p.returncode == 0, (out, err)
        outs.append(out.decode())
    final = json.loads(run_php(["php"] + ini + [str(script), "1", "final"]).splitlines()[-1])
    return outs, final


def assert_shared(outs, final):
    """Every request opened the session, and the lock serialised them: no
    increment lost, every request's name kept."""
    for out in outs:
        assert json.loads(out.splitlines()[-1])["ok"] == ROUNDS, out
    assert final["n"] == 2 * ROUNDS + 1, final
    assert final["who"] == {"alpha": ROUNDS, "beta": ROUNDS, "final": 1}, final
