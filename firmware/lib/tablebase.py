# The part of table 100's rules (table_rules.py) that the controller needs while
# it runs: names, start times, the canonical JSON its SHA-256 is taken of. The
# checks of a whole table (step 208) are needed only when a table is loaded, at
# boot and by `config commit`, so table_rules.py is loaded then and dropped again
# (table100.py). Plain Python, like table_rules.py: the host runs it too.
import json

MAX_VOLUMES = 16  # volumes on one controller, so item 101 is bounded too
MAX_ENTRIES = 16  # backup information 103: at most one entry per volume
MAX_TABLE_BYTES = 8192  # the table as JSON on the wire and in flash
CHANNELS = ("uart0", "uart1")  # bit n of flag 102 is channel interface uartN
MAX_ADDRESS = 15  # device address 122 on one channel
WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")  # 0 = Monday, as the DS3231 driver

_NAME_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_NAME_RULE = "use exactly 6 characters A-Z and 0-9, e.g. VOL001"

EMPTY = {"backup": [], "catch_up": False, "channel_flag": 0, "volumes": {"count": 0, "names": []}}


def check_name(name):
    """Volume names (101, 120) and backup device volume names (123): a volume
    serial such as VOL001 or SSC001. Raises ValueError with the rule."""
    if not isinstance(name, str) or len(name) != 6 or [c for c in name if c not in _NAME_CHARS]:
        raise ValueError("bad name %s: %s" % (_show(name), _NAME_RULE))
    return name


def parse_start(s):
    """Backup start time 124 -> (kind, hour, minute, second, day), the arguments
    of DS3231.set_alarm1. Forms: "HH:MM:SS" daily, "*:MM:SS" hourly,
    "MON HH:MM:SS" weekly (day = weekday, 0 = Monday), "D HH:MM:SS" monthly
    (day = date 1-31; a date a month lacks is skipped that month)."""
    if not isinstance(s, str):
        raise ValueError('must be a quoted string such as "02:00:00", got %s' % _show(s))
    words = s.split(" ")
    if len(words) > 2 or "" in words:
        raise ValueError("bad start time %r: use HH:MM:SS, *:MM:SS, MON HH:MM:SS or D HH:MM:SS" % s)
    parts = words[-1].split(":")
    if len(parts) != 3 or [p for p in parts if len(p) != 2 and p != "*"]:
        raise ValueError("bad start time %r: the time of day is HH:MM:SS (two digits each) or *:MM:SS" % s)
    hour = None if parts[0] == "*" else _digits(parts[0], 0, 23, "hour", s)
    minute = _digits(parts[1], 0, 59, "minute", s)
    second = _digits(parts[2], 0, 59, "second", s)
    if hour is None:
        if len(words) == 2:
            raise ValueError("bad start time %r: the hourly form *:MM:SS takes no day" % s)
        return ("hourly", 0, minute, second, None)
    if len(words) == 1:
        return ("daily", hour, minute, second, None)
    day = words[0]
    if day in WEEKDAYS:
        return ("weekly", hour, minute, second, WEEKDAYS.index(day))
    if len(day) <= 2:
        return ("monthly", hour, minute, second, _digits(day, 1, 31, "day of month", s))
    raise ValueError("bad start time %r: the day is MON..SUN (weekly) or 1-31 (monthly)" % s)


def canonical_json(obj):
    """One byte-exact JSON text per table (sorted keys, no spaces) on both
    interpreters, so its SHA-256 identifies a table."""
    if isinstance(obj, dict):
        return "{" + ",".join(json.dumps(k) + ":" + canonical_json(obj[k]) for k in sorted(obj)) + "}"
    if isinstance(obj, list):
        return "[" + ",".join(canonical_json(v) for v in obj) + "]"
    return json.dumps(obj)


# --- helpers -----------------------------------------------------------------

def _show(v):
    if isinstance(v, str):
        return repr(v)
    if isinstance(v, bool) or v is None:
        return json.dumps(v)
    if isinstance(v, (int, float)):
        return str(v)
    return "a " + ("list" if isinstance(v, list) else "table" if isinstance(v, dict) else "value")


def _digits(p, lo, hi, what, s):
    if not p or [c for c in p if c not in "0123456789"]:
        raise ValueError("bad start time %r: the %s %r is not a number" % (s, what, p))
    v = int(p)
    if not lo <= v <= hi:
        raise ValueError("bad start time %r: %s %d is out of range %d-%d" % (s, what, v, lo, hi))
    return v
