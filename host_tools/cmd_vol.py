"""backupctl vol: volumes on the controller's SD card.

create / list / info / delete run the board's `vol` commands. put / get stream
a file into or out of a volume through the console as base64 lines, several
lines ahead of the replies, and end with a SHA-256 check against the board's
own hash (`vol sha`): a transfer that is cut or damaged is reported as
incomplete, never as success.
"""
import argparse
import base64
import collections
import hashlib
import os
import sys
import time

import serial

from host_tools import target
from host_tools.console import BoardConsole, ConsoleError

WRITE_BYTES = 1024  # data per `vol write` line (one console line holds 2048 bytes)
READ_BYTES = 2048  # data per `vol read` reply
WINDOW = 8  # lines in flight


class Incomplete(RuntimeError):
    """A transfer did not finish; the message says how far it got."""


def register(sub):
    p = sub.add_parser("vol", help="volumes on the controller: create, list, info, delete, put, get",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    s = p.add_subparsers(dest="action", metavar="ACTION")
    s.required = True
    c = s.add_parser("create", help="make a zero-filled volume")
    c.add_argument("name", help="6 characters A-Z 0-9, e.g. VOL001")
    c.add_argument("--size", required=True, help="e.g. 4M, 512K")
    c.add_argument("--block", type=int, default=512, choices=(512, 1024), help="block size (default 512)")
    s.add_parser("list", help="the volumes and their last-update times")
    i = s.add_parser("info", help="one volume's header")
    i.add_argument("name")
    d = s.add_parser("delete", help="delete a volume and its data")
    d.add_argument("name")
    d.add_argument("--yes", action="store_true", help="confirm: without it nothing is deleted")
    put = s.add_parser("put", help="write FILE into a volume from block 0, then compare SHA-256")
    put.add_argument("name")
    put.add_argument("file")
    get = s.add_parser("get", help="read a whole volume into FILE, then compare SHA-256")
    get.add_argument("name")
    get.add_argument("file")
    for sp in (c, s.choices["list"], i, d, put, get):
        target.add_port_args(sp)
        sp.add_argument("--timeout", type=float, default=10.0,
                        help="seconds without a reply before the board counts as gone (default 10)")
    p.set_defaults(func=run)


def run(a):
    with BoardConsole(target.resolve(a), timeout=a.timeout) as con:
        con.sync()
        if a.action == "create":
            r = con.call("vol create %s --size %s --block %d" % (a.name, a.size, a.block), timeout=a.timeout + 600)
        elif a.action == "list":
            r = con.call("vol list")
        elif a.action == "info":
            r = con.call("vol info " + a.name)
        elif a.action == "delete":
            r = con.call("vol delete %s%s" % (a.name, " --yes" if a.yes else ""))
        elif a.action == "put":
            put(con, a.name, a.file, a.timeout)
            return 0
        else:
            get(con, a.name, a.file, a.timeout)
            return 0
    print(r.get("text") or "\n".join("%s: %s" % kv for kv in sorted(r.items()) if kv[0] not in ("ok", "id")))
    return 0


# --- transfers ---------------------------------------------------------------

class Progress:
    """A bar on a terminal; on a pipe or log, one line per 10 %."""

    def __init__(self, label, total, out=sys.stderr):
        self.label, self.total, self.out = label, total, out
        self.done = 0
        self.t0 = time.monotonic()
        self._shown = -1.0
        self.tty = out.isatty()

    def add(self, n):
        self.done += n
        now = time.monotonic()
        frac = self.done / self.total if self.total else 1.0
        if self.tty and (now - self._shown > 0.1 or self.done == self.total):
            bar = "#" * int(frac * 30)
            self.out.write("\r%s [%-30s] %3d%% %s %s/s" % (self.label, bar, frac * 100, _mib(self.done),
                                                           _kib(self.rate())))
            self.out.flush()
            self._shown = now
        elif not self.tty and int(frac * 10) > self._shown:
            self._shown = int(frac * 10)
            self.out.write("%s %3d%% %s\n" % (self.label, frac * 100, _mib(self.done)))
            self.out.flush()

    def rate(self):
        return self.done / max(time.monotonic() - self.t0, 1e-6)

    def finish(self):
        if self.tty:
            self.out.write("\n")


def _mib(n):
    return "%.1f MiB" % (n / 2**20)


def _kib(n):
    return "%.0f KiB" % (n / 1024)


def _pipeline(con, commands, on_reply, timeout):
    """Send (command, meta) pairs up to WINDOW lines ahead; on_reply(reply, meta)
    sees the replies in order (the board runs lines one after the other).
    Raises Incomplete when the board stops answering or restarts, ConsoleError
    when it refuses a line. Reads through BoardConsole's line reader, so events
    (a boot among them) are recorded as for any call."""
    pending = collections.deque()
    boots = _boots(con)
    it = iter(commands)
    more = True
    n = 0
    try:
        while True:
            while more and len(pending) < WINDOW:
                item = next(it, None)
                if item is None:
                    more = False
                    break
                n += 1
                rid = "x%d" % n  # apart from BoardConsole.call's plain numbers
                con.ser.write(("#%s %s\n" % (rid, item[0])).encode())
                pending.append((rid, item[1]))
            if not pending:
                return
            deadline = time.monotonic() + timeout
            while True:
                line = con._readline(deadline)
                if line is None:
                    raise Incomplete("no reply from the board for %g s" % timeout)
                reply = con._take(line)
                if _boots(con) != boots:
                    raise Incomplete("the board restarted")
                if reply is not None and reply.get("id") == pending[0][0]:
                    break
            rid, meta = pending.popleft()
            if not reply.get("ok"):
                raise ConsoleError(reply.get("error"))
            on_reply(reply, meta)
    except serial.SerialException as e:
        raise Incomplete("the serial port went away (%s)" % e)


def _boots(con):
    return sum(1 for _, ev in con.events if ev.get("event") == "boot")


def _sha_timeout(nbytes, timeout):
    return timeout + nbytes / 100e3  # the board hashes at >= 100 KB/s


def put(con, name, path, timeout=10.0, out=None):
    """Write FILE into volume NAME from block 0 (the last block padded with
    zeros) and check the board's SHA-256 of those blocks. Progress goes to
    `out` (default stderr), the result line too (default stdout)."""
    info = con.call("vol info " + name)
    bs, cap = info["block_size"], info["size"]
    size = os.path.getsize(path)
    if size == 0:
        raise ValueError("%s is empty: nothing to put" % path)
    if size > cap:
        raise ValueError("%s is %d bytes but %s holds %d: make a bigger volume" % (path, size, name, cap))
    h = hashlib.sha256()
    prog = Progress("put %s" % name, size, out or sys.stderr)

    def lines(f):
        lba = 0
        while True:
            data = f.read(WRITE_BYTES)
            if not data:
                return
            n = len(data)
            data += bytes(-n % bs)
            h.update(data)
            yield "vol write %s %d %s" % (name, lba, base64.b64encode(data).decode()), n
            lba += len(data) // bs

    try:
        with open(path, "rb") as f:
            _pipeline(con, lines(f), lambda r, n: prog.add(n), timeout)
        blocks = -(-size // bs)
        board = con.call("vol sha %s 0 %d" % (name, blocks), timeout=_sha_timeout(blocks * bs, timeout))
        if board["sha256"] != h.hexdigest():
            raise Incomplete("the board's SHA-256 of blocks 0-%d differs from the file's" % (blocks - 1))
    except (Incomplete, ConsoleError, TimeoutError, serial.SerialException) as e:
        raise Incomplete("vol put %s incomplete (%s of %s written): %s; the volume holds a partial copy: "
                         "run the put again" % (name, _mib(prog.done), _mib(size), e))
    finally:
        prog.finish()
    print("put %s -> %s: %d bytes in %.1f s (%s/s), SHA-256 %s matches" % (
        path, name, size, time.monotonic() - prog.t0, _kib(prog.rate()), h.hexdigest()[:16]), file=out)


def get(con, name, path, timeout=10.0):
    """Read all of volume NAME into FILE; FILE appears only when the board's
    SHA-256 of the volume matches what arrived."""
    info = con.call("vol info " + name)
    bs, blocks, size = info["block_size"], info["blocks"], info["size"]
    per = READ_BYTES // bs
    h = hashlib.sha256()
    prog = Progress("get %s" % name, size)
    part = path + ".part"

    def lines():
        for lba in range(0, blocks, per):
            yield "vol read %s %d %d" % (name, lba, min(per, blocks - lba)), None

    def got(reply, _):
        data = base64.b64decode(reply["data"])
        out.write(data)
        h.update(data)
        prog.add(len(data))

    try:
        with open(part, "wb") as out:
            _pipeline(con, lines(), got, timeout)
            board = con.call("vol sha " + name, timeout=_sha_timeout(size, timeout))
        if board["sha256"] != h.hexdigest():
            raise Incomplete("the board's SHA-256 of %s differs from what arrived" % name)
        os.replace(part, path)
    except (Incomplete, ConsoleError, TimeoutError, serial.SerialException) as e:
        raise Incomplete("vol get %s incomplete (%s of %s read): %s; %s was not written" % (
            name, _mib(prog.done), _mib(size), e, path))
    finally:
        prog.finish()
        if os.path.exists(part):
            os.unlink(part)
    print("get %s -> %s: %d bytes in %.1f s (%s/s), SHA-256 %s matches" % (
        name, path, size, time.monotonic() - prog.t0, _kib(prog.rate()), h.hexdigest()[:16]))
