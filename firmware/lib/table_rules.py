# Rules of configuration table 100 (step 208 of Fig. 6), written once for both
# sides: the controller firmware (MicroPython) applies them before it stores a
# table, and `backupctl config validate` (CPython) imports this very file, so the
# host and the board can never disagree. Plain Python only: no micropython,
# typing or dataclasses imports. The schema is documented in board_configs/TABLE.md.
import json
from tablebase import (MAX_VOLUMES, MAX_ENTRIES, MAX_TABLE_BYTES, CHANNELS, MAX_ADDRESS, WEEKDAYS,  # noqa: F401
                       EMPTY, check_name, parse_start, canonical_json, _show)

_TOP_KEYS = ("backup", "catch_up", "channel_flag", "volumes")
_VOLUME_KEYS = ("count", "names")
_ENTRY_KEYS = ("address", "channel", "device_volume", "start", "volume")


class TableError(ValueError):
    """A table breaks a rule. field names the item, e.g. backup[1].channel."""

    def __init__(self, field, reason):
        super().__init__("%s: %s" % (field, reason))
        self.field = field
        self.reason = reason


def parse(data):
    """Table bytes as sent or stored (UTF-8 JSON) -> dict, not yet checked."""
    if len(data) > MAX_TABLE_BYTES:
        raise TableError("table", "%d bytes is more than the %d a table may have" % (len(data), MAX_TABLE_BYTES))
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeError:
        raise TableError("table", "not UTF-8 text")
    try:
        return json.loads(text)
    except ValueError:
        raise TableError("table", "not valid JSON (truncated?)")


def check(table, volumes=None, uarts=None):
    """Apply the rules of step 208; returns the table in canonical form.
    volumes: names of the volumes on the board (None: not checked, as on the
    host, which cannot know). uarts: channel names the board file declares
    (None: not checked). Raises TableError for the first broken rule."""
    if not isinstance(table, dict):
        raise TableError("table", "must be a table (JSON object), got %s" % _show(table))
    _known(table, _TOP_KEYS, "")
    if "channel_flag" not in table:
        raise TableError("channel_flag", "missing (102: bit 0 = uart0, bit 1 = uart1)")
    flag = _int(table["channel_flag"], 0, (1 << len(CHANNELS)) - 1, "channel_flag",
                "102 has bit 0 (uart0) and bit 1 (uart1) only")
    catch_up = table.get("catch_up", False)
    if not isinstance(catch_up, bool):
        raise TableError("catch_up", "must be true or false, got %s" % _show(catch_up))
    names = _volumes(table.get("volumes"))
    entries = table.get("backup", [])
    if not isinstance(entries, list):
        raise TableError("backup", "must be a list of entries ([[backup]] in TOML)")
    if len(entries) > MAX_ENTRIES:
        raise TableError("backup", "%d entries; at most %d" % (len(entries), MAX_ENTRIES))
    out = []
    for i, e in enumerate(entries):
        out.append(_entry(e, i, names, out, flag))
    used = [e["channel"] for e in out]
    if uarts is not None:
        for i, e in enumerate(out):
            if e["channel"] not in uarts:
                raise TableError("backup[%d].channel" % i, "this board has no %s (its board file declares %s)"
                                 % (e["channel"], ", ".join(uarts) or "no UART"))
        for bit, ch in enumerate(CHANNELS):
            if flag >> bit & 1 and ch not in used and ch not in uarts:
                raise TableError("channel_flag", "bit %d (%s) is set, but no backup entry uses %s and the board "
                                 "has no %s" % (bit, ch, ch, ch))
    if volumes is not None:
        for i, n in enumerate(names):
            if n not in volumes:
                raise TableError("volumes.names[%d]" % i, "volume %s does not exist on the SD card "
                                 "(`vol list` shows the volumes, `vol create` makes one)" % n)
    return {"backup": out, "catch_up": catch_up, "channel_flag": flag,
            "volumes": {"count": len(names), "names": names}}


# --- helpers -----------------------------------------------------------------

def _known(d, keys, where):
    for k in d:
        if k not in keys:
            raise TableError(where + str(k), "unknown key; the keys here are " + ", ".join(keys))


def _int(v, lo, hi, field, rule):
    # bool is an int subclass on CPython (not on MicroPython): refuse it on both
    if isinstance(v, bool) or not isinstance(v, int):
        raise TableError(field, "must be a whole number, got %s" % _show(v))
    if not lo <= v <= hi:
        raise TableError(field, "%d is out of range %d-%d (%s)" % (v, lo, hi, rule))
    return v


def _volumes(v):
    # 101 volume information: the volumes this table covers, 110 their number
    if v is None:
        raise TableError("volumes", "missing (101: names = [...] of the volumes this table covers)")
    if not isinstance(v, dict):
        raise TableError("volumes", "must be a table with names = [...]")
    _known(v, _VOLUME_KEYS, "volumes.")
    names = v.get("names")
    if not isinstance(names, list):
        raise TableError("volumes.names", "missing or not a list of volume names")
    if len(names) > MAX_VOLUMES:
        raise TableError("volumes.names", "%d volumes; at most %d" % (len(names), MAX_VOLUMES))
    for i, n in enumerate(names):
        field = "volumes.names[%d]" % i
        _name(n, field)
        if names.index(n) != i:
            raise TableError(field, "%s is listed twice (also volumes.names[%d])" % (n, names.index(n)))
    count = v.get("count", len(names))
    if isinstance(count, bool) or count != len(names):
        raise TableError("volumes.count", "%s, but 110 is the number of volumes and %d names are listed"
                         % (_show(count), len(names)))
    return list(names)


def _name(n, field):
    try:
        return check_name(n)
    except ValueError as e:
        raise TableError(field, str(e))


def _entry(e, i, names, done, flag):
    # one entry of backup information 103: 120-124; done = the entries before it, checked
    at = "backup[%d]" % i
    if not isinstance(e, dict):
        raise TableError(at, "must be a table with %s" % ", ".join(_ENTRY_KEYS))
    _known(e, _ENTRY_KEYS, at + ".")
    for k in _ENTRY_KEYS:
        if k not in e:
            raise TableError(at + "." + k, "missing")
    vol = _name(e["volume"], at + ".volume")
    if vol not in names:
        raise TableError(at + ".volume", "%s (120) is not in volumes.names (101)" % vol)
    for j, o in enumerate(done):
        if o["volume"] == vol:
            raise TableError(at + ".volume", "%s already has entry backup[%d]: one entry per target volume" % (vol, j))
    ch = e["channel"]
    if ch not in CHANNELS:
        raise TableError(at + ".channel", "%s is not a channel (121): use uart0 or uart1" % _show(ch))
    bit = CHANNELS.index(ch)
    if not flag >> bit & 1:
        raise TableError(at + ".channel", "%s is not enabled in channel_flag (102 = %d): set bit %d" % (ch, flag, bit))
    addr = _int(e["address"], 0, MAX_ADDRESS, at + ".address", "122 is a device address on the channel")
    dvol = _name(e["device_volume"], at + ".device_volume")
    for j, o in enumerate(done):
        if (o["channel"], o["address"], o["device_volume"]) == (ch, addr, dvol):
            raise TableError(at + ".device_volume", "%s at %s address %d is already the destination of backup[%d]"
                             % (dvol, ch, addr, j))
    try:
        parse_start(e["start"])
    except ValueError as err:
        raise TableError(at + ".start", str(err))
    return {"address": addr, "channel": ch, "device_volume": dvol, "start": e["start"], "volume": vol}
