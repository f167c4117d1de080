# Configuration table 100 in flash: steps 209-213 of Fig. 6 (the rules of step
# 208 are in lib/table_rules.py, the console side in configflow.py).
#
#   209 store(data)  writes /table100.new and closes it;
#   210              reads it back and compares, then renames it to
#                    /table100.pending: the one atomic switch of a load;
#   212              the caller reboots the board;
#   213 boot(check)  at boot, checks a pending table again and renames it over
#                    /table100.json (the table in force) only if it passes.
# LittleFS renames are atomic, so a power cut at any instant leaves the old or
# the new table in force, never a mix or none.
#
# API for the scheduler and the backup engine:
#   current() -> the table in force, canonical (table_rules.check) and read-only:
#       {"channel_flag": 102, "catch_up": bool, "volumes": {"count": 110, "names": [101]},
#        "backup": [{"volume": 120, "channel": 121, "address": 122,
#                    "device_volume": 123, "start": 124}, ...]}
#     tablebase.EMPTY when no table was ever loaded.
#   tablebase.parse_start(entry["start"]) -> (kind, hour, minute, second, day),
#     the arguments of DS3231.set_alarm1.
import os
import sys
import hashlib
from binascii import hexlify
import tablebase

PATH = "/table100.json"
_NEW = "/table100.new"
_PENDING = "/table100.pending"

_current = tablebase.EMPTY
_boot = None  # what this boot did about table 100 (step 213), for `config show`


class StepError(Exception):
    """A step of Fig. 6 failed; field names the item (or "table")."""

    def __init__(self, step, field, reason):
        super().__init__("step %d: %s: %s" % (step, field, reason))
        self.step = step
        self.field = field
        self.reason = reason


def current():
    return _current


def sha256(table):
    return hexlify(hashlib.sha256(tablebase.canonical_json(table).encode()).digest()).decode()


def boot_result():
    """None, or {"result": "applied"} / {"result": "error", "step": 209 or 213, "field", "reason"}."""
    return _boot


def store(data):
    """209 + 210: data (canonical JSON of a checked table) goes to flash and
    becomes pending; the next boot applies it."""
    try:
        with open(_NEW, "wb") as f:
            f.write(data)
    except OSError as e:
        _remove(_NEW)
        raise StepError(209, "table", "cannot write the flash: %s" % e)
    try:
        back = _read(_NEW)
    except OSError as e:
        back = e
    if back != data:
        _remove(_NEW)
        raise StepError(210, "table", "what was read back from the flash differs from what was written")
    os.rename(_NEW, _PENDING)


def boot(check):
    """213, at boot: apply a pending table if check(table) passes, then load the
    table in force. check applies the rules with the board's facts and raises
    TableError. Returns boot_result()."""
    # The rules of a whole table (lib/table_rules.py) are loaded for this and
    # dropped again: while it runs the controller needs only lib/tablebase.py.
    import table_rules
    try:
        return _apply(check, table_rules)
    finally:
        sys.modules.pop("table_rules", None)


def _apply(check, table_rules):
    global _current, _boot
    if _exists(_NEW):  # a load cut short before its verify (210): never in force
        _remove(_NEW)
        _boot = {"result": "error", "step": 209, "field": "table",
                 "reason": "a load was cut short by a reset before its verify (210)"}
    if _exists(_PENDING):
        try:
            check(table_rules.parse(_read(_PENDING)))
            os.rename(_PENDING, PATH)
            _boot = {"result": "applied"}
        except table_rules.TableError as e:
            _remove(_PENDING)
            _boot = {"result": "error", "step": 213, "field": e.field, "reason": e.reason}
    if not _exists(PATH):
        return _boot
    try:
        table = table_rules.parse(_read(PATH))
        _current = table_rules.check(table)
        check(table)  # e.g. a volume gone from the SD card: reported, the table stays in force
    except table_rules.TableError as e:
        if _boot is None:
            _boot = {"result": "error", "step": 213, "field": e.field, "reason": e.reason}
    return _boot


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass
