# Maxim DS3231 real-time clock over the machine.I2C memory API.
# Datetimes are tuples (year, month, day, hour, minute, second, weekday), weekday
# 0 = Monday; the chip's day register holds weekday + 1, the Adafruit convention.
# Seconds are counted from 2000-01-01 00:00:00 with our own calendar arithmetic,
# because time.mktime's epoch differs between the rp2 (2000) and unix (1970) ports.
# Years are 2000-2099: the chip takes every fourth year as a leap year, which
# ends being true at 2100. A transfer that fails (no ACK, a bus timeout) is tried
# again a few times, then raised as one OSError that names the chip.
import time
from micropython import const

_TIME = const(0x00)
_ALARM1 = const(0x07)
_CONTROL = const(0x0E)
_STATUS = const(0x0F)
_TEMP = const(0x11)
# control
_EOSC = const(0x80)
_CONV = const(0x20)
_INTCN = const(0x04)
_A1IE = const(0x01)
# status
_OSF = const(0x80)
_EN32KHZ = const(0x08)
_A2F = const(0x02)
_A1F = const(0x01)
_FLAGS = const(0x83)  # OSF | A2F | A1F: cleared by writing 0; writing 1 keeps them
_CENTURY = const(0x80)
_MASK = const(0x80)  # alarm register bit 7: field not compared
_DY = const(0x40)  # alarm day register holds a weekday, not a date
_TRIES = const(3)  # per transfer; 2 + 4 ms apart: rides out a glitch, not a dead chip

# alarm 1 kinds, in order of how many of (second, minute, hour, day) the chip compares
KINDS = ("second", "minute", "hourly", "daily", "weekly", "monthly")


def _bcd(v):
    return v + 6 * (v // 10)


def _unbcd(b):
    return b - 6 * (b >> 4)


def days_from_civil(y, m, d):
    # days since 2000-01-01, proleptic Gregorian calendar (H. Hinnant's algorithm)
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 730425


def to_seconds(dt):
    # (year, month, day, hour, minute, second, ...) -> seconds since 2000-01-01
    return days_from_civil(dt[0], dt[1], dt[2]) * 86400 + dt[3] * 3600 + dt[4] * 60 + dt[5]


def from_seconds(t):
    # inverse of to_seconds, with the weekday (2000-01-01 was a Saturday)
    days, sod = divmod(t, 86400)
    z = days + 730425
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    m = mp + 3 if mp < 10 else mp - 9
    y = yoe + era * 400 + (m <= 2)
    return (y, m, doy - (153 * mp + 2) // 5 + 1, sod // 3600, sod // 60 % 60, sod % 60, (days + 5) % 7)


class DS3231:
    def __init__(self, i2c, addr=0x68):
        self._i2c = i2c
        self._addr = addr
        buf = memoryview(bytearray(7))
        self._b7 = buf
        self._b4 = buf[:4]
        self._b2 = buf[:2]
        self._b1 = buf[:1]

    def _io(self, write, reg, buf):
        for i in range(_TRIES):
            try:
                if write:
                    self._i2c.writeto_mem(self._addr, reg, buf)
                else:
                    self._i2c.readfrom_mem_into(self._addr, reg, buf)
                return buf
            except OSError as e:
                err = e.errno
            if i < _TRIES - 1:
                time.sleep_ms(2 << i)
        raise OSError(err, "DS3231 at 0x%02x not answering (%d tries)" % (self._addr, _TRIES))

    def _read(self, reg, buf):
        return self._io(False, reg, buf)

    def _get(self, reg):
        return self._read(reg, self._b1)[0]

    def _put(self, reg, value):
        self._b1[0] = value
        self._io(True, reg, self._b1)

    def _clear(self, flag):
        # The other flags are written as 1, so one that sets between the read and
        # the write is not lost; EN32kHz is the only plain bit to keep.
        self._put(_STATUS, (self._get(_STATUS) & _EN32KHZ) | (_FLAGS & ~flag))

    def datetime(self):
        b = self._read(_TIME, self._b7)
        h = b[2]
        if h & 0x40:  # 12-hour mode (set by another tool), bit 5 = PM
            hour = _unbcd(h & 0x1F) % 12 + (12 if h & 0x20 else 0)
        else:
            hour = _unbcd(h & 0x3F)
        year = 2000 + _unbcd(b[6]) + (100 if b[5] & _CENTURY else 0)
        return (year, _unbcd(b[5] & 0x1F), _unbcd(b[4] & 0x3F), hour,
                _unbcd(b[1] & 0x7F), _unbcd(b[0] & 0x7F), (b[3] - 1) % 7)

    def set_datetime(self, dt):
        # dt: (year, month, day, hour, minute, second[, weekday]); the weekday is
        # computed from the date. Starts the oscillator and clears OSF.
        if not 2000 <= dt[0] <= 2099:
            raise ValueError("year %d: the DS3231 counts 2000-2099" % dt[0])
        norm = from_seconds(to_seconds(dt))
        if norm[:6] != tuple(dt[:6]):
            raise ValueError("impossible date or time")
        b = self._b7
        b[0] = _bcd(dt[5])
        b[1] = _bcd(dt[4])
        b[2] = _bcd(dt[3])  # 24-hour mode
        b[3] = norm[6] + 1
        b[4] = _bcd(dt[2])
        b[5] = _bcd(dt[1])
        b[6] = _bcd(dt[0] % 100)
        # one transaction: writing seconds restarts the chip's countdown chain
        self._io(True, _TIME, b)
        self._put(_CONTROL, self._get(_CONTROL) & ~(_EOSC | _CONV))
        self._clear(_OSF)

    def lost_power(self):
        # OSF: the oscillator stopped (first power-up, battery removed) since set
        return bool(self._get(_STATUS) & _OSF)

    def temperature(self):
        # last conversion (the chip converts every 64 s), 0.25 C steps
        b = self._read(_TEMP, self._b2)
        return (b[0] - 256 if b[0] & 0x80 else b[0]) + (b[1] >> 6) * 0.25

    def set_alarm1(self, kind, hour=0, minute=0, second=0, day=None):
        # day: weekday 0-6 (Monday = 0) for "weekly", date 1-31 for "monthly".
        # Clears a stale A1F so that only a match of the new setting reports.
        if kind not in KINDS or not (0 <= second < 60 and 0 <= minute < 60 and 0 <= hour < 24):
            raise ValueError("bad alarm")
        b = self._b4
        b[0] = _bcd(second)
        b[1] = _bcd(minute)
        b[2] = _bcd(hour)
        b[3] = 0
        if kind == "weekly":
            if day is None or not 0 <= day < 7:
                raise ValueError("bad weekday")
            b[3] = _DY | (day + 1)
        elif kind == "monthly":
            if day is None or not 1 <= day <= 31:
                raise ValueError("bad date")
            b[3] = _bcd(day)
        for i in range(KINDS.index(kind), 4):
            b[i] |= _MASK
        self._io(True, _ALARM1, b)
        self._clear(_A1F)

    def alarm1_fired(self):
        return bool(self._get(_STATUS) & _A1F)

    def clear_alarm1(self):
        # releases the INT pin if alarm 1 pulled it low
        self._clear(_A1F)

    def enable_alarm1_int(self, on=True):
        # INTCN=1 routes alarms to INT/SQW (no square wave). CONV is written 0 so
        # this never starts a temperature conversion.
        c = (self._get(_CONTROL) & ~(_CONV | _A1IE)) | _INTCN
        self._put(_CONTROL, c | _A1IE if on else c)
