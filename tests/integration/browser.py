"""
A headless Chromium driven over the DevTools protocol on a pipe
(--remote-debugging-pipe: JSON messages ending in a NUL byte, commands on the
browser's fd 3, answers and events on its fd 4), for tests that need what a
real browser renders: the page's innerText (what a person reads, after
layout and style) rather than its source.

Everything is bounded: each command waits at most COMMAND_TIMEOUT, and the
browser is stopped by its PID (SIGTERM, then SIGKILL) in close(). The
profile lives in a fresh directory under the test's tmp_path.
"""
import json
import os
import select
import shutil
import signal
import subprocess
import time

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
COMMAND_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

# The browser talks to no one but the page under test.
FLAGS = ["--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--mute-audio"]


class BrowserError(AssertionError):
    pass


class Browser:
    def __init__(self, tmp_path):
        profile = tmp_path / "chromium-profile"
        profile.mkdir()
        self.log_path = tmp_path / "chromium.log"
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        argv = [CHROMIUM] + FLAGS + ["--user-data-dir=%s" % profile, "--remote-debugging-pipe",
                                     "about:blank"]
        if os.geteuid() == 0:
            argv.insert(1, "--no-sandbox")      # Chromium refuses its sandbox as root
        # The protocol is on fds 3 and 4 of the browser: bash moves the pipes
        # there (dash takes only one-digit descriptors) and execs it.
        shell = 'exec "$@" 3<&%d 4>&%d %d<&- %d>&-' % (to_child_r, from_child_w,
                                                      to_child_r, from_child_w)
        self._logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(["bash", "-c", shell, "bash"] + argv,
                                     stdin=subprocess.DEVNULL,
                                     stdout=self._logf, stderr=subprocess.STDOUT,
                                     pass_fds=(to_child_r, from_child_w))
        os.close(to_child_r)
        os.close(from_child_w)
        self._buf = b""
        self._next_id = 0
        self.session = None
        target = self.command("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.command("Target.attachToTarget", targetId=target,
                                    flatten=True)["sessionId"]

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def _message(self, deadline):
        """The next protocol message, or BrowserError past the deadline."""
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("Chromium did not answer within %.0f s; log:\n%s" % (
                    COMMAND_TIMEOUT, self.log()[-3000:]))
            ready, _, _ = select.select([self._from_child], [], [], left)
            if ready:
                chunk = os.read(self._from_child, 65536)
                if not chunk:
                    raise BrowserError("Chromium closed its protocol pipe (status %s); log:\n%s"
                                       % (self.proc.poll(), self.log()[-3000:]))
                self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def command(self, method, **params):
        """Send one command (to the page once attached) and return its result."""
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params}
        if self.session is not None and not method.startswith(("Target.", "Browser.")):
            msg["sessionId"] = self.session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + COMMAND_TIMEOUT
        while True:
            reply = self._message(deadline)
            if reply.get("id") != self._next_id:
                continue                    # an event, or an answer to no one
            if "error" in reply:
                raise BrowserError("%s: %s" % (method, reply["error"]))
            return reply.get("result", {})

    def evaluate(self, expression):
        """The value of a JavaScript expression in the page."""
        result = self.command("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise BrowserError("%s: %s" % (expression, result["exceptionDetails"]))
        return result["result"].get("value")

    def navigate(self, url):
        self.command("Page.navigate", url=url)

    def wait_for(self, predicate, what, timeout):
        """Poll the page until predicate(state) holds; state is a dict with the
        page's url, readyState, innerText and timeOrigin (which changes when the
        page reloads). Returns the state."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.evaluate(
                "({url: location.href, ready: document.readyState, "
                "text: document.body ? document.body.innerText : '', "
                "origin: performance.timeOrigin})")
            if state["ready"] == "complete" and predicate(state):
                return state
            if time.monotonic() > deadline:
                raise BrowserError("after %.0f s the page still does not show %s; it shows:\n%s"
                                   % (timeout, what, state["text"]))
            time.sleep(0.1)

    def close(self):
        if self.proc.poll() is None:
            try:
                os.write(self._to_child, json.dumps(
                    {"id": 0, "method": "Browser.close", "params": {}}).encode() + b"\0")
            except OSError:
                pass
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        self._logf.close()
