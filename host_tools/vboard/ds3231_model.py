# Register-level model of a Maxim DS3231 RTC at I2C address 0x68, as a bus sees it.
# Runs unchanged under CPython and MicroPython unix (the virtual board's boot ROM
# loads it inside the `micropython` process), so it uses only time and json.
#
# Time is derived from a host clock, so it keeps counting while the virtual board is
# off, like the battery-backed chip. Chip time is counted in seconds since
# 2000-01-01 00:00:00 in the chip's own calendar: every year divisible by 4 is a leap
# year and the century bit toggles when the year register rolls over 99 -> 00.
# Alarm flags are evaluated lazily on every access from the cached next matching
# second of each alarm, never by stepping through seconds.
#
# Injected faults (`backupctl sim rtc`, read through `faults()`, a dict):
#   nack, nack_seq: the next `nack` transfers to 0x68 are not acknowledged, and
#     fail with OSError EIO as the rp2 port's machine.I2C reports an address NACK.
#     The count used is kept in the state file per nack_seq, so a reset of the
#     board does not replay a request that was already consumed.
#   cut: host time of a power cut the simulator made while the backup cell was
#     off (battery off): the oscillator stopped there. At the next power-on the
#     time resumes from that instant with OSF set, once per cut.
import json
import time

ADDR = 0x68
NREGS = 0x13

_CONTROL = 0x0E
_STATUS = 0x0F
_AGING = 0x10
_TEMP_MSB = 0x11

# control
_CONV = 0x20
_INTCN = 0x04
# status (A1F/A2F sit at the bit positions of A1IE/A2IE in control)
_OSF = 0x80
_EN32K = 0x08
_BSY = 0x04
_A2F = 0x02
_A1F = 0x01
_CLEAR_ONLY = _OSF | _A2F | _A1F

_CONV_TIME = 0.2  # host seconds a forced temperature conversion keeps BSY/CONV set
_TEMP = (24, 0x40)  # 24.25 C: MSB integer part, LSB bits 7-6 quarter degrees
_ALARM_SEARCH_DAYS = 70  # an existing date recurs within two months; else never
_SLOT = 512  # bytes per state record; the file holds two

_DAY = 86400
_CENTURY = 36525  # days in a chip century (25 leap years)
_PERIOD = 2 * _CENTURY * _DAY  # the century bit wraps after two centuries
_MDAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _bcd(v):
    return v + 6 * (v // 10)


def _unbcd(b):
    return b - 6 * (b >> 4)


def _hour24(b):
    # bit 6 selects 12-hour mode, where bit 5 is PM; in 24-hour mode bit 5 is the 20s
    if b & 0x40:
        return _unbcd(b & 0x1F) % 12 + (12 if b & 0x20 else 0)
    return _unbcd(b & 0x3F)


def _civil(days):
    # chip day number -> (century bit, year 0-99, month 1-12, date 1-31)
    c, d = divmod(days, _CENTURY)
    q, d = divmod(d, 1461)
    if d < 366:
        y = 0
    else:
        y, d = divmod(d - 366, 365)
        y += 1
    leap = y == 0
    m = 0
    while True:
        n = _MDAYS[m] + (1 if leap and m == 1 else 0)
        if d < n:
            return c & 1, 4 * q + y, m + 1, d + 1
        d -= n
        m += 1


def _days(c, y, m, date):
    # inverse of _civil; out-of-range dates roll over into the following days
    m = min(max(m, 1), 12)
    d = c * _CENTURY + (y // 4) * 1461 + (366 + (y % 4 - 1) * 365 if y % 4 else 0)
    for i in range(m - 1):
        d += _MDAYS[i]
    if m > 2 and y % 4 == 0:
        d += 1
    return d + date - 1


def _first(lo, n, want):
    # smallest v in [lo, n) equal to want (None = any value), or None
    if want is None:
        return lo if lo < n else None
    return want if lo <= want < n else None


def _in_day(sod, ah, am, asec):
    # first second of the day >= sod whose hour/minute/second match (None = masked)
    h0, m0, s0 = sod // 3600, sod // 60 % 60, sod % 60
    h = _first(h0, 24, ah)
    while h is not None:
        m = _first(m0 if h == h0 else 0, 60, am)
        while m is not None:
            s = _first(s0 if (h, m) == (h0, m0) else 0, 60, asec)
            if s is not None:
                return h * 3600 + m * 60 + s
            m = _first(m + 1, 60, am)
        h = _first(h + 1, 24, ah)
    return None


class DS3231Model:
    def __init__(self, state_path=None, clock=None, faults=None):
        self._clock = clock or time.time
        self._faults = faults or dict
        self._ptr = 0
        self._conv_until = 0.0
        self._seq = 0
        self._nseq = 0  # nack_seq of the NACK request being consumed
        self._nused = 0  # transfers of that request already failed
        self._cut = None  # the last power cut applied
        # The boot ROM unmounts the host filesystem once the hardware is built, so
        # the state file is opened now and kept open for the model's life.
        self._f = None
        if state_path:
            try:
                self._f = open(state_path, "r+b")
            except OSError:
                self._f = open(state_path, "w+b")
        if not self._load():
            self._power_on()
            self._save()
        self._after_cut()
        self._arm()

    def close(self):
        # board powered off: release the state file
        if self._f:
            self._f.close()
            self._f = None

    # ---- the bus ----

    def writeto(self, addr, buf):
        self._check(addr)
        if not len(buf):
            return  # address-only probe: the chip ACKs
        p = buf[0] % NREGS  # pointers past 0x12 are undefined on the chip
        if len(buf) == 1:
            self._ptr = p  # set the pointer for a following read
            return
        now = self._tick()
        img = self._image(now)
        touched = 0
        sec_written = False
        regs = self._regs
        for b in buf[1:]:
            if p < 7:
                img[p] = b
                sec_written = sec_written or p == 0
            elif p == _CONTROL:
                regs[p] = b & ~_CONV
                if b & _CONV and self._clock() >= self._conv_until:
                    self._conv_until = self._clock() + _CONV_TIME
            elif p == _STATUS:
                regs[p] = (regs[p] & b & _CLEAR_ONLY) | (b & _EN32K)
            elif p <= _AGING:
                regs[p] = b
            touched |= 1 << p
            p = p + 1 if p < NREGS - 1 else 0
        self._ptr = p
        if touched & 0x7F:
            self._set_time(img, now, sec_written)
        if touched & 0x3FFF:  # time or alarm registers
            self._arm()
        self._save()

    def readfrom_into(self, addr, buf):
        self._check(addr)
        img = self._image(self._tick())
        p = self._ptr
        for i in range(len(buf)):
            buf[i] = img[p]
            p = p + 1 if p < NREGS - 1 else 0
        self._ptr = p

    # ---- the INT/SQW pin ----

    def int_asserted(self):
        # open-drain output pulled low while an enabled alarm flag is set
        self._tick()
        ctrl = self._regs[_CONTROL]
        return bool(ctrl & _INTCN) and bool(ctrl & self._regs[_STATUS] & (_A1F | _A2F))

    def next_event_in(self):
        # host seconds until INT may fall by itself; None when only a write can change it
        if self.int_asserted() or not self._regs[_CONTROL] & _INTCN:
            return None
        ctrl = self._regs[_CONTROL]
        now = self._chip_time()
        wait = None
        for nxt, ie in ((self._next1, _A1F), (self._next2, _A2F)):
            if nxt is not None and ctrl & ie and (wait is None or nxt - now < wait):
                wait = nxt - now
        return wait

    # ---- internals ----

    def _check(self, addr):
        # Called once per START + address byte. A NACK aborts the transfer, so a
        # failing memory read (pointer write, repeated START, read) counts once.
        if addr != ADDR:
            raise OSError(19, "ENODEV")  # no ACK to the address byte
        f = self._faults()
        n = f.get("nack", 0)
        if n:
            seq = f.get("nack_seq", 0)
            if seq != self._nseq:
                self._nseq, self._nused = seq, 0
            if self._nused < n:
                self._nused += 1
                self._save()
                raise OSError(5, "EIO")  # what rp2's machine.I2C raises on a NACK

    def _after_cut(self):
        # A power cut with the backup cell off stopped the oscillator at that
        # instant: the time resumes from there now, and OSF says it is not valid.
        cut = self._faults().get("cut")
        if cut is None or cut == self._cut:
            return
        self._cut = cut
        self._base += int((cut - self._host) // 1)
        self._host = self._clock()
        self._last = self._base
        self._regs[_STATUS] |= _OSF
        self._save()

    def _chip_time(self):
        return self._base + (self._clock() - self._host)

    def _second(self):
        # integer base plus a floored small difference: exact at second boundaries
        return self._base + int((self._clock() - self._host) // 1)

    def _tick(self):
        # Flag every alarm whose next match lies in (last evaluated second, now].
        # Returns the current chip second.
        now = self._second()
        if now > self._last:
            due = 0
            if self._next1 is not None and self._next1 <= now:
                due |= _A1F
            if self._next2 is not None and self._next2 <= now:
                due |= _A2F
            self._last = now
            if due:
                self._regs[_STATUS] |= due
                self._arm()
        elif now < self._last:  # host clock stepped back
            self._last = now
            self._arm()
        return now

    def _image(self, now):
        # all 19 registers as the chip latches them at the start of a transfer
        img = bytearray(self._regs)
        days, sod = divmod(now % _PERIOD, _DAY)
        c, y, m, date = _civil(days)
        h = sod // 3600
        if self._h12:
            hb = 0x40 | (0x20 if h >= 12 else 0) | _bcd(h % 12 or 12)
        else:
            hb = _bcd(h)
        img[0] = _bcd(sod % 60)
        img[1] = _bcd(sod // 60 % 60)
        img[2] = hb
        img[3] = (days + self._wd) % 7 + 1
        img[4] = _bcd(date)
        img[5] = _bcd(m) | (0x80 if c else 0)
        img[6] = _bcd(y)
        if self._clock() < self._conv_until:
            img[_CONTROL] |= _CONV
            img[_STATUS] |= _BSY
        return img

    def _set_time(self, img, now, sec_written):
        self._h12 = bool(img[2] & 0x40)
        days = _days(img[5] >> 7, _unbcd(img[6]), _unbcd(img[5] & 0x1F), _unbcd(img[4] & 0x3F))
        # the day register is the user's own count: keep it as written
        self._wd = ((img[3] & 7) - 1 - days) % 7
        t = days * _DAY + _hour24(img[2]) * 3600 + _unbcd(img[1] & 0x7F) * 60 + _unbcd(img[0] & 0x7F)
        if sec_written:
            # writing seconds resets the 1 Hz countdown chain: a full second from now
            self._host = self._clock()
        else:
            # keep the sub-second phase: move the host anchor to the current second
            self._host += now - self._base
        self._base = t
        self._last = t  # the written second itself does not match; the next tick may

    def _alarm_next(self, regs):
        # first chip second after the last evaluated one that matches the alarm
        # registers (second, minute, hour, day/date); bit 7 set = not compared
        asec, am, ah, ad = [None if b & 0x80 else b for b in regs]
        asec = None if asec is None else _unbcd(asec & 0x7F)
        am = None if am is None else _unbcd(am & 0x7F)
        ah = None if ah is None else _hour24(ah)
        day0, sod = divmod(self._last + 1, _DAY)
        for day in range(day0, day0 + _ALARM_SEARCH_DAYS):
            if ad is None or _unbcd(ad & 0x3F) == (
                    (day + self._wd) % 7 + 1 if ad & 0x40 else _civil(day % (2 * _CENTURY))[3]):
                s = _in_day(sod if day == day0 else 0, ah, am, asec)
                if s is not None:
                    return day * _DAY + s
        return None

    def _arm(self):
        r = self._regs
        self._next1 = self._alarm_next(r[7:11])
        # alarm 2 has no seconds register: it fires at seconds == 00
        self._next2 = self._alarm_next(b"\x00" + r[11:14])

    def _power_on(self):
        # datasheet power-on state: 2000-01-01 00:00:00, day 1, 24-hour mode,
        # control 0x1C (RS2, RS1, INTCN), status 0x88 (OSF, EN32kHz)
        r = bytearray(NREGS)
        r[_CONTROL] = 0x1C
        r[_STATUS] = _OSF | _EN32K
        r[_TEMP_MSB], r[_TEMP_MSB + 1] = _TEMP
        self._regs = r
        self._base = 0
        self._host = self._clock()
        self._last = 0
        self._h12 = False
        self._wd = 0

    def _load(self):
        # Two records alternate; the valid one with the higher sequence number wins.
        # No valid record means the backup battery was removed: power-on state.
        if self._f is None:
            return False
        self._f.seek(0)
        data = self._f.read()
        best = None
        for i in (0, 1):
            try:
                s = json.loads(data[i * _SLOT:(i + 1) * _SLOT])
                rec = (int(s["seq"]), bytearray(s["regs"]), int(s["base"]), float(s["host"]),
                       int(s["last"]), bool(s["h12"]), int(s["wd"]) % 7,
                       int(s.get("nseq", 0)), int(s.get("nused", 0)), s.get("cut"))
            except (ValueError, KeyError, TypeError):
                continue
            if len(rec[1]) == NREGS and (best is None or rec[0] > best[0]):
                best = rec
        if best is None:
            return False
        (self._seq, self._regs, self._base, self._host, self._last, self._h12, self._wd,
         self._nseq, self._nused, self._cut) = best
        return True

    def _save(self):
        # Overwrite the older record: a kill in mid-write leaves the newer one intact.
        if self._f is None:
            return
        self._seq += 1
        rec = json.dumps({
            "seq": self._seq,
            "regs": list(self._regs),
            "base": self._base,
            "host": self._host,
            "last": self._last,
            "h12": self._h12,
            "wd": self._wd,
            "nseq": self._nseq,
            "nused": self._nused,
            "cut": self._cut,
        }).encode()
        self._f.seek(self._seq % 2 * _SLOT)
        self._f.write(rec + b" " * (_SLOT - len(rec)))
        self._f.flush()
