"""Put the firmware on a running MicroPython board over its console: a USB serial
port, a pty of a virtual board, or a pyserial URL (rfc2217://host:port).

With mpremote's serial transport, in the raw REPL: one exec reports the board's
MicroPython and the SHA-256 of every file the firmware may have there; only the
files that differ are sent (the SD card driver is the firmware's own
lib/sdspi.py: nothing is downloaded); then the board is reset and must answer
`version` on its console.
"""
import ast
import contextlib
import hashlib
import io
import os
import posixpath
import re
import time

import serial
from mpremote.transport import TransportError
from mpremote.transport_serial import SerialTransport

from host_tools import build
from host_tools.console import BoardConsole
from host_tools.ports import PortError, resolve_port

# micropython-lib's SD driver, installed by `mip` for firmware before lib/sdspi.py: removed
LEGACY = ("lib/sdcard.mpy", "lib/sdcard.py")
# Bytes of file data per raw-REPL exec: 4x fewer round trips than mpremote's 256,
# still a small string for the Pico's heap to compile.
CHUNK = 1024

# One exec: the board's platform and .mpy version, the SHA-256 of each listed file
# (None when absent) and which listed folders exist. Filled in with two lists.
_PROBE = """\
import sys, os, hashlib, binascii
def _h(p):
    try:
        f = open(p, 'rb')
    except OSError:
        return None
    h = hashlib.sha256()
    b = bytearray(512)
    m = memoryview(b)
    while True:
        n = f.readinto(b)
        if not n:
            break
        h.update(m[:n])
    f.close()
    return binascii.hexlify(h.digest()).decode()
def _d(p):
    try:
        return os.stat(p)[0] & 0x4000 != 0
    except OSError:
        return False
print(repr({'platform': sys.platform, 'mpy': getattr(sys.implementation, '_mpy', 0),
            'files': {p: _h(p) for p in %r}, 'dirs': [p for p in %r if _d(p)]}))
"""


class FlashError(Exception):
    """The board could not be reached, written or brought back; says what to do."""


def _variants(path):
    """A module may be on the board as .py or .mpy; the board imports .py first."""
    stem, ext = os.path.splitext(path)
    return [stem + ".py", stem + ".mpy"] if ext in (".py", ".mpy") else [path]


def _connect(port):
    try:
        t = SerialTransport(port, baudrate=115200, timeout=10)
    except TransportError:
        raise FlashError("cannot open %s: is a console, mpremote or ser2net using it?"
                         " `backupctl ports` lists the boards" % port) from None
    said = io.StringIO()  # mpremote prints what the port sent when the REPL does not come
    try:
        with contextlib.redirect_stdout(said):
            # Soft reset first, as mpremote does: the firmware stops and its heap is free.
            t.enter_raw_repl(soft_reset=True)
    except (TransportError, serial.SerialException, OSError) as e:
        t.close()
        said = said.getvalue().strip()
        raise FlashError("no MicroPython REPL answers on %s (%s%s): is MicroPython installed"
                         " (backupctl flash --micropython FILE.uf2)?"
                         % (port, e, "" if said in ("", "b''") else "; it sent " + said[-200:])) from None
    return t


def _exec(t, code):
    try:
        return t.exec(code)
    except TransportError as e:
        raise FlashError("the board failed running %r: %s" % (code.splitlines()[0], str(e).strip())) from None


def probe(t, files, dirs):
    """{platform, mpy, files: {path: sha256 hex or None}, dirs: [existing]} of the board."""
    return ast.literal_eval(_exec(t, _PROBE % (list(files), list(dirs))).decode())


def _reset(t, platform):
    if platform == "rp2":
        # As `mpremote reset`: the pause lets the raw REPL's OK out before USB drops.
        t.exec_raw_no_follow("import time, machine\ntime.sleep_ms(100)\nmachine.reset()")
    else:
        # Ctrl-D at the friendly REPL: a soft reset that runs boot.py and main.py
        # (a virtual board's supervisor restarts its process).
        t.exit_raw_repl()
        t.serial.write(b"\x04")


def wait_for_firmware(port, timeout=30):
    """Reopen port until the firmware answers `version`; returns that reply."""
    deadline = time.monotonic() + timeout
    while True:
        con = None
        try:
            con = BoardConsole(resolve_port(port))
            return con.sync(timeout=max(5.0, deadline - time.monotonic()))
        except TimeoutError:
            # The line that says why (MemoryError: ...), not the echo of our own commands.
            errors = [ln for ln in con.lines if re.match(rb"\w+(Error|Exception)\b", ln)]
            said = errors[-1].decode(errors="replace") if errors else "nothing"
            raise FlashError("the firmware on %s does not answer `version` after the reset; it said: %s"
                             " (`backupctl console %s` shows the rest)" % (port, said, port)) from None
        except (PortError, serial.SerialException, OSError):
            # A Pico leaves USB and comes back as it resets: its port vanishes meanwhile.
            if time.monotonic() > deadline:
                raise FlashError("%s did not come back within %d s of the reset: is it plugged in?"
                                 " `backupctl ports` lists the boards" % (port, timeout)) from None
            time.sleep(0.5)
        finally:
            if con is not None:
                con.close()


def flash(port, board, mpy=True, log=print, boot_timeout=30):
    """Copy the firmware of board (role or .toml path) to the MicroPython board at
    port (device path, USB serial number or URL), reset it and wait for its
    console. mpy: modules compiled by mpy-cross (a Pico's heap, and a virtual
    board's, cannot compile the whole firmware at boot), else as source.
    Returns {changed, unchanged, removed, bytes, version}."""
    role = build.load_board(board)["role"]
    paths = [v for p in sorted(build.source_files(role)) for v in _variants(p)] + ["board.json"]
    folders = sorted({posixpath.dirname(p) for p in paths} - {""})
    dev = resolve_port(port)
    log("connecting to %s" % dev)
    t = _connect(dev)
    try:
        info = probe(t, ["/" + p for p in paths + list(LEGACY)], ["/" + d for d in folders])
        on_board = {p[1:]: h for p, h in info["files"].items()}
        if mpy:
            build.check_mpy_compat(info["mpy"])
            log("compiling with mpy-cross")
        tree = build.deploy_tree(board, mpy=mpy)
        if not build.fits({p: len(d) for p, d in tree.items()}):
            raise FlashError("the firmware does not fit the Pico's %d KiB flash filesystem:"
                             " `make mpy` lists the files" % (build.FLASH_FS_BYTES // 1024))
        changed = [p for p in sorted(tree) if on_board.get(p) != hashlib.sha256(tree[p]).hexdigest()]
        # The other form of a module we deploy would shadow it (.py) or waste flash (.mpy).
        stale = [p for p in paths + list(LEGACY) if p not in tree and on_board.get(p)]
        for d in folders:
            if "/" + d not in info["dirs"]:
                _exec(t, "import os\nos.mkdir(%r)" % ("/" + d))
        sent = 0
        for p in changed:
            log("  %7d  %s" % (len(tree[p]), p))
            try:
                t.fs_writefile("/" + p, tree[p], chunk_size=CHUNK)
            except (TransportError, OSError) as e:
                raise FlashError("writing %s failed: %s (is the flash full? mpremote connect %s df)"
                                 % (p, e, dev)) from None
            sent += len(tree[p])
        for p in stale:  # after the writes: an interrupted flash leaves every module in one form or the other
            log("  removed  %s" % p)
            _exec(t, "import os\nos.remove(%r)" % ("/" + p))
        log("%d changed, %d unchanged, %d removed, %d bytes sent"
            % (len(changed), len(tree) - len(changed), len(stale), sent))
        log("resetting the board")
        _reset(t, info["platform"])
    except BaseException:
        try:
            t.exit_raw_repl()  # leave the board at its friendly REPL, as mpremote does
        except (OSError, serial.SerialException):
            pass
        raise
    finally:
        try:
            t.close()
        except (OSError, serial.SerialException):
            pass  # a Pico drops off USB as it resets
    version = wait_for_firmware(port, boot_timeout)
    log("%s answers: firmware %s on MicroPython %s" % (role, version.get("version"), version.get("micropython")))
    return {"changed": changed, "unchanged": len(tree) - len(changed), "removed": stale, "bytes": sent,
            "version": version}
