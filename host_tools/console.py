"""Talk to a board's console from the host: numbered commands with JSON replies,
and the board's tagged events. Works on any pyserial port or URL."""
import json
import re
import time

import serial

_BOOT = re.compile(rb'^(\* boot\b|!\{.*"event": "boot")')


class ConsoleError(RuntimeError):
    """The board answered with an error (the text is the board's own)."""


class BoardConsole:
    def __init__(self, port, baudrate=115200, timeout=10):
        self.port = port
        self.timeout = timeout
        self.ser = serial.serial_for_url(port, baudrate=baudrate, timeout=0.05)
        self._id = 0
        self._buf = b""
        self.events = []   # (time, dict) for every event seen
        self.lines = []    # every other line (prose, tracebacks), for diagnostics

    def close(self):
        self.ser.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    # --- reading ------------------------------------------------------------
    def _readline(self, deadline):
        while b"\n" not in self._buf:
            if time.monotonic() > deadline:
                return None
            self._buf += self.ser.read(self.ser.in_waiting or 1)
        line, self._buf = self._buf.split(b"\n", 1)
        return line.rstrip(b"\r")

    def _take(self, line):
        """Classify a line; returns the reply dict for JSON replies, else None."""
        s = line.lstrip(b"> ")
        if s.startswith(b"!{"):
            try:
                self.events.append((time.monotonic(), json.loads(s[1:])))
            except ValueError:
                self.lines.append(line)
            return None
        if s.startswith(b"{"):
            try:
                return json.loads(s)
            except ValueError:
                pass
        if _BOOT.match(s):
            self.events.append((time.monotonic(), {"event": "boot"}))
        self.lines.append(line)
        return None

    def pump(self, seconds=0.0):
        """Read whatever arrives for `seconds`, recording events."""
        deadline = time.monotonic() + seconds
        while True:
            line = self._readline(deadline)
            if line is None:
                return
            self._take(line)

    # --- commands -----------------------------------------------------------
    def send_line(self, text):
        self.ser.write(text.encode() + b"\n")

    def call(self, cmd, timeout=None, check=True, during=None):
        """Run one command; returns its JSON reply. Raises ConsoleError on an
        error reply when check is true. during() is called after each line
        that arrives meanwhile (it may act on the events, or raise)."""
        self._id += 1
        rid = str(self._id)
        self.ser.write(("#%s %s\n" % (rid, cmd)).encode())
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            line = self._readline(deadline)
            if line is None:
                raise TimeoutError("no reply to %r from %s within %ss; last output: %r"
                                   % (cmd, self.port, timeout or self.timeout, self.lines[-3:]))
            reply = self._take(line)
            if reply is not None and reply.get("id") == rid:
                if check and not reply.get("ok"):
                    raise ConsoleError(reply.get("error"))
                return reply
            if during:
                during()

    def wait_event(self, name, timeout=None, since=0.0, match=None):
        """Wait for event `name` seen after time `since` (monotonic); returns it."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            for t, ev in self.events:
                if t >= since and ev.get("event") == name and (match is None or match(ev)):
                    return ev
            line = self._readline(deadline)
            if line is None:
                raise TimeoutError("no %r event from %s; last output: %r" % (name, self.port, self.lines[-3:]))
            self._take(line)

    def sync(self, timeout=15):
        """Wait until the firmware answers (after a boot or reboot), then
        switch events to JSON."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.ser.reset_input_buffer()
                self._buf = b""
                self.call("mode json", timeout=1)
                return self.call("version")
            except (TimeoutError, ConsoleError):
                if any(b">>>" in ln or b"raw REPL" in ln for ln in self.lines[-5:]) or self._buf.endswith(b">>> "):
                    # left in the REPL (e.g. by mpremote): leave raw mode and
                    # soft-reset so that main.py runs again
                    self.ser.write(b"\r\x02\x04")
                    time.sleep(0.5)
        raise TimeoutError("board on %s does not answer `version`: is the firmware running?" % self.port)
