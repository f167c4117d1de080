# Line console shared by both boards. People get prose and a prompt; host tools
# switch to machine mode (`mode json`) where every reply is one JSON object on
# one line and asynchronous events are lines tagged with "!". Every line gets
# exactly one reply, and a bad line never changes anything or kills the task.
import sys
import json
import asyncio
from micropython import const
import hal
import supervisor

_LINE_MAX = const(2048)  # room for a 1 KiB block in base64 plus the command


class CmdError(Exception):
    """A command failed; the text goes to the user as is."""


class UsageError(CmdError):
    """The command line itself is wrong; the command's usage is added."""


def arg_int(s, what):
    try:
        return int(s, 0)
    except ValueError:
        raise UsageError("%s must be a number, got %r" % (what, s))


def parse_size(s):
    # "4M", "512K", "1G", "4096": the sizes people type
    s = s.strip().upper()
    mult = 1
    if s and s[-1] in "KMG":
        mult = {"K": 1024, "M": 1024 * 1024, "G": 1024 * 1024 * 1024}[s[-1]]
        s = s[:-1]
    try:
        n = int(s) * mult
    except ValueError:
        raise UsageError("bad size %r: use a number with K, M or G, e.g. 4M" % s)
    if n <= 0:
        raise UsageError("size must be positive")
    return n


def opts(args, flags=(), values=()):
    # Split "--flag" / "--key value" options from positional words.
    pos, kw = [], {}
    i = 0
    while i < len(args):
        a = args[i]
        if a.startswith("--"):
            k = a[2:]
            if k in flags:
                kw[k] = True
            elif k in values:
                if i + 1 >= len(args):
                    raise UsageError("option %s needs a value" % a)
                i += 1
                kw[k] = args[i]
            else:
                raise UsageError("unknown option %s" % a)
        else:
            pos.append(a)
        i += 1
    return pos, kw


class Console:
    def __init__(self):
        self._cmds = {}  # "word" or "word sub" -> (handler, usage, help)
        self.json = False
        self._out = sys.stdout
        self._lock = asyncio.Lock()

    def command(self, name, usage, help):
        def deco(fn):
            self._cmds[name] = (fn, usage, help)
            return fn

        return deco

    def help_rows(self):
        return sorted((v[1], v[2]) for v in self._cmds.values())

    # --- output -----------------------------------------------------------
    def _write(self, s):
        self._out.write(s)

    def _echo(self, b):
        # as bytes: a character typed byte by byte is not valid UTF-8 on its own
        self._out.buffer.write(b)

    def event(self, name, **fields):
        if self.json:
            fields["event"] = name
            self._write("!" + json.dumps(fields) + "\n")
        else:
            txt = " ".join("%s=%s" % kv for kv in sorted(fields.items()))
            self._write("* %s %s\n" % (name, txt) if txt else "* %s\n" % name)

    # A line that starts with "#<id>" is a host tool's: its reply is JSON
    # whatever the mode, so tools never parse prose.
    def _reply(self, rid, result):
        if self.json or rid is not None:
            d = result if isinstance(result, dict) else {"text": result}
            d["ok"] = True
            if rid is not None:
                d["id"] = rid
            json.dump(d, self._out)  # streamed: a long reply (`backup list`) is never one string
            self._write("\n")
        else:
            if isinstance(result, dict):
                text = result.pop("text", None)
                if text is None:
                    text = "\n".join("%s: %s" % kv for kv in sorted(result.items()))
                result = text
            if result:
                self._write(result + "\n")

    def _error(self, rid, msg):
        if self.json or rid is not None:
            d = {"ok": False, "error": msg}
            if rid is not None:
                d["id"] = rid
            self._write(json.dumps(d) + "\n")
        else:
            self._write("error: %s\n" % msg)

    # --- input ------------------------------------------------------------
    def _find(self, words):
        if len(words) > 1 and (words[0] + " " + words[1]) in self._cmds:
            return self._cmds[words[0] + " " + words[1]], words[2:]
        if words[0] in self._cmds:
            return self._cmds[words[0]], words[1:]
        subs = [k for k in self._cmds if k.startswith(words[0] + " ")]
        if subs:
            raise CmdError("%s needs one of: %s" % (words[0], ", ".join(sorted(k.split(" ", 1)[1] for k in subs))))
        raise CmdError("unknown command %r; type help" % words[0])

    async def execute(self, line):
        # line: any buffer (the console's read buffer itself), decoded at once
        rid = None
        try:
            try:
                text = str(line, "utf-8")
            except UnicodeError:
                raise CmdError("line is not UTF-8 text")
            words = text.split()
            if words and words[0].startswith("#"):
                rid = words.pop(0)[1:]
            if not words:
                if rid is not None:
                    raise CmdError("empty command")
                return
            (fn, usage, _), args = self._find(words)
            try:
                res = fn(args)
                if hasattr(res, "send"):  # coroutine: long-running command
                    res = await res
            except UsageError as e:
                raise CmdError("%s (usage: %s)" % (e, usage))
            self._reply(rid, res if res is not None else {})
        except CmdError as e:
            self._error(rid, str(e))
        except MemoryError:
            self._error(rid, "out of memory")
        except Exception as e:  # never let one line kill the console
            self._error(rid, "%s: %s" % (type(e).__name__, e))

    def _prompt(self):
        if not self.json:
            self._write("> ")

    async def run(self):
        cin = hal.console_in()
        buf = bytearray(_LINE_MAX)  # a whole line per read: far fewer passes for long lines
        mv = memoryview(buf)
        line = bytearray()  # a line begun in an earlier read (or being edited)
        overflow = False
        prev = 0  # last terminator seen, so that "\r\n" ends one line, not two
        self._prompt()
        while True:
            supervisor.pause("console")  # waiting for a person is not being stuck
            got = await cin.readinto(buf)
            supervisor.checkin("console")
            # A person's terminal sends edit keys and needs an echo; a host tool
            # (machine mode) sends whole lines and reads replies only. A line
            # read whole is run from the read buffer itself, not copied.
            edits = not self.json and (buf.find(b"\x08", 0, got) >= 0 or buf.find(b"\x7f", 0, got) >= 0
                                       or buf.find(b"\x15", 0, got) >= 0)
            if not self.json and not edits:
                self._echo(bytes(mv[:got]).replace(b"\r", b"\r\n"))
            start = 0
            while start < got:
                eol = _eol(buf, start, got)
                piece = mv[start:eol]
                if edits and not overflow:
                    self._echo(_edit(line, piece))
                    piece = mv[0:0]
                if len(line) + len(piece) > _LINE_MAX:
                    overflow = True
                    line = bytearray()
                if eol == got:
                    if not overflow:
                        line.extend(piece)  # the line goes on in the next read
                    break
                term = buf[eol]
                if edits:
                    self._write("\r\n" if term == 13 else "\n")
                start = eol + 1
                if not line and not len(piece) and not overflow and prev == 13 and term == 10:
                    prev = 0
                    continue
                prev = term
                if overflow:
                    self._error(None, "line too long (max %d bytes)" % _LINE_MAX)
                else:
                    if line:  # begun in an earlier read
                        line.extend(piece)
                        piece = line  # type: ignore[assignment]  # execute() takes either buffer
                    supervisor.pause("console")  # a long command's own tasks answer for it
                    await self.execute(piece)  # decoded before its first await: buf is not read into meanwhile
                    supervisor.checkin("console")
                if line:
                    line = bytearray()
                overflow = False
                self._prompt()


def _edit(line, piece):
    # Backspace and DEL erase the last character (all bytes of a UTF-8 one),
    # Ctrl-U the whole line, in place; returns what the terminal must show.
    # A loop per byte, but only over chunks a person typed with edit keys.
    echo = bytearray()
    for b in piece:
        if b == 8 or b == 127:
            i = len(line) - 1
            while i > 0 and line[i] & 0xC0 == 0x80:
                i -= 1
            if i >= 0:
                line[i:] = b""
                echo.extend(b"\b \b")
        elif b == 21:
            echo.extend(b"\b \b" * sum(1 for c in line if c & 0xC0 != 0x80))
            line[:] = b""
        else:
            line.append(b)
            echo.append(b)
    return echo


def _eol(buf, start, end):
    a = buf.find(b"\r", start, end)
    b = buf.find(b"\n", start, end)
    if a < 0:
        return end if b < 0 else b
    return a if b < 0 or a < b else b
