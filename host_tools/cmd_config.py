"""backupctl config: configuration table 100 (board_configs/TABLE.md).

validate FILE   checks a table offline with the firmware's own rules
                (firmware/lib/table_rules.py, imported from the firmware tree),
                against the board file's UARTs. Only the board knows whether
                the volumes it names exist: `config load` checks that.
load FILE       the configuration-setting flow of Fig. 6: sends the table as
                JSON, the board checks it (208), writes and verifies it
                (209, 210) and reboots (212); this tool waits for the board to
                come back and reports whether the boot applied it (213).
show            the table in force, for people or as JSON (--json).
"""
import argparse
import base64
import hashlib
import json
import sys
import time
import tomllib
import zlib

import serial

from host_tools import firmware_lib, target
from host_tools.build import load_board
from host_tools.console import BoardConsole, ConsoleError


table_rules = firmware_lib("table_rules")  # host and board run the same file
PIECE = 768  # table bytes per `config data` line (1024 characters of base64)


class ConfigError(RuntimeError):
    """The table was refused; the message names the file or step and the field."""


def register(sub):
    p = sub.add_parser("config", help="configuration table 100: validate, load, show",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    s = p.add_subparsers(dest="action", metavar="ACTION")
    s.required = True
    v = s.add_parser("validate", help="check a table file offline with the firmware's rules")
    ld = s.add_parser("load", help="send a table to the controller, which checks, stores and applies it")
    for sp in (v, ld):
        sp.add_argument("file", help="table file: TOML (see board_configs/TABLE.md) or JSON")
        sp.add_argument("--board", default="controller",
                        help="board file whose UARTs the channels must match (default: controller)")
    sh = s.add_parser("show", help="the table in force on the controller")
    sh.add_argument("--json", action="store_true", help="the table as JSON (the canonical form the board keeps)")
    for sp in (ld, sh):
        target.add_port_args(sp)
    p.set_defaults(func=run)


def run(a):
    if a.action == "validate":
        t = check_file(a.file, a.board)
        print("%s: valid: %d volumes, %d backup entries, channel flag %d (checked against board file %r). "
              "Not checked here: that the volumes exist on the controller's SD card; only the board knows, "
              "and `config load` checks it." % (a.file, t["volumes"]["count"], len(t["backup"]),
                                                t["channel_flag"], a.board))
        return 0
    port = target.resolve(a)
    if a.action == "load":
        t = check_file(a.file, a.board)
        print("%s: valid on the host; sending it to the controller on %s" % (a.file, port))
        with BoardConsole(port) as con:
            con.sync()
            load(con, t)
        return 0
    with BoardConsole(port) as con:
        con.sync()
        r = con.call("config show")
    print(json.dumps(r["table"], indent=2, sort_keys=True) if a.json else r["text"])
    return 0


# --- files -------------------------------------------------------------------

def read_file(path):
    """Table file (TOML, or JSON by its .json name) -> dict, not yet checked."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError("%s: not UTF-8 text (byte %d is 0x%02x): save the file as UTF-8"
                          % (path, e.start, data[e.start]))
    try:
        if path.endswith(".json"):
            return json.loads(text)
        return tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        msg = str(e)
        if "end of document" in msg or e.__class__ is json.JSONDecodeError and e.pos == len(text):
            msg += "; the file ends at line %d: is it truncated?" % (text.count("\n") + 1)
        raise ConfigError("%s: not valid %s: %s" % (path, "JSON" if path.endswith(".json") else "TOML", msg))


def board_uarts(board):
    cfg = load_board(board)
    return [c for c in table_rules.CHANNELS if c in cfg]


def check_file(path, board="controller"):
    """The table in a file, checked with the board's rules except the volumes'
    existence; returns its canonical form."""
    try:
        return table_rules.check(read_file(path), uarts=board_uarts(board))
    except table_rules.TableError as e:
        raise ConfigError("%s: %s" % (path, e))


def table_bytes(table):
    return table_rules.canonical_json(table).encode()


def table_sha(table):
    return hashlib.sha256(table_bytes(table)).hexdigest()


# --- the load flow -------------------------------------------------------------

def stage(con, data):
    """206/207: the board takes in the table bytes (not yet checked)."""
    con.call("config begin %d %d" % (len(data), zlib.crc32(data)))
    for off in range(0, len(data), PIECE):
        con.call("config data %d %s" % (off, base64.b64encode(data[off:off + PIECE]).decode()))


def send(con, data):
    """206-210: stage table bytes and commit them; returns the commit reply.
    Raises ConsoleError with the board's message (step, field, reason)."""
    stage(con, data)
    return con.call("config commit")


def wait_reboot(con, since, timeout=30.0):
    """212: wait until the board has rebooted (its boot line after `since`, or
    its USB port going away and coming back), then sync."""
    deadline = time.monotonic() + timeout
    try:
        con.wait_event("boot", timeout=timeout, since=since)
    except serial.SerialException:
        # a real board: the reset re-enumerates USB; reopen the port when it is back
        con.ser.close()
        while True:
            try:
                con.ser.open()
                break
            except serial.SerialException:
                if time.monotonic() > deadline:
                    raise TimeoutError("the controller did not come back on %s within %g s" % (con.port, timeout))
                time.sleep(0.2)
    con.sync(timeout=max(deadline - time.monotonic(), 5))


def load(con, table, out=sys.stdout):
    """The whole flow for a canonical table: send, wait for the reboot, check
    that the boot applied it (213). Raises ConfigError naming step and field."""
    sha = table_sha(table)
    since = time.monotonic()
    try:
        send(con, table_bytes(table))
    except ConsoleError as e:
        raise ConfigError("the controller refused the table: %s" % e)
    print("208 checked, 209 written, 210 verified by the controller; rebooting it to apply the table (212)",
          file=out)
    wait_reboot(con, since)
    r = con.call("config show")
    boot = r["boot"] or {}
    if boot.get("result") == "error":
        raise ConfigError("the controller's boot refused the table: step %s: %s: %s (the previous table stays "
                          "in force)" % (boot["step"], boot["field"], boot["reason"]))
    if r["sha256"] != sha:
        raise ConfigError("the controller came back with another table in force (sha256 %s, sent %s): "
                          "load it again" % (r["sha256"][:16], sha[:16]))
    print("213 the controller rebooted without error; table 100 in force is the one loaded (sha256 %s)"
          % sha[:16], file=out)
