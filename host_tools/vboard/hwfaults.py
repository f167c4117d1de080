# Faults the simulator injects into a virtual board's parts (SD card, DS3231),
# read by the part models inside the board's `micropython` process. The daemon
# keeps them in <board dir>/faults.json, one JSON object keyed by part ("sd",
# "rtc"), so they survive resets and power cuts as a pulled card or a flat coin
# cell does. The file is rewritten in place at a fixed size (the board holds it
# open from before / became the flash image, so a rename would go unseen).
import json

SIZE = 4096  # bytes the file always has: faults are padded with spaces


class FaultFile:
    def __init__(self, path):
        self._f = open(path, "rb")
        # Read into one buffer for good: the SD card model asks at every command,
        # and a fresh 4 KiB object each time would be heap a Pico never spends,
        # in one piece (it once failed a backup on a fragmented virtual heap).
        self._buf = bytearray(SIZE)
        self._raw = b""
        self._state = {}

    def get(self, part):
        """The current faults of `part` (a dict, empty when none)."""
        self._f.seek(0)
        self._f.readinto(self._buf)  # the file always holds SIZE bytes
        if self._buf != self._raw:  # compared in place: a copy only when the faults changed
            raw = bytes(self._buf)
            try:
                self._state = json.loads(raw) if raw.strip() else {}
                self._raw = raw
            except ValueError:
                pass  # read while the daemon rewrote it: keep the last good state
        return self._state.get(part) or {}


def write(path, state):
    """Host side: replace the whole fault state (the daemon's board supervisor)."""
    data = json.dumps(state, sort_keys=True).encode()
    if len(data) > SIZE:
        raise ValueError("fault state larger than %d bytes" % SIZE)
    mode = "r+b" if _exists(path) else "wb"
    with open(path, mode) as f:
        f.write(data + b" " * (SIZE - len(data)))


def _exists(path):
    try:
        open(path, "rb").close()
        return True
    except OSError:
        return False
