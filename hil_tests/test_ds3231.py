"""DS3231: the virtual chip (host_tools/vboard/ds3231_model.py) and the firmware driver
(firmware/lib/ds3231.py).

The model is checked against the datasheet with the unmodified Adafruit CircuitPython
driver (a second, independent reading of the datasheet) and against a calendar
reference; the firmware driver runs in the real `micropython` interpreter.
"""
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time

import pytest
from hypothesis import example, given, settings, strategies as st

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import adafruit_ds3231  # noqa: E402

from hil_tests.busio_adapter import BusioI2C  # noqa: E402
from host_tools.vboard.ds3231_model import DS3231Model  # noqa: E402

MICROPYTHON = shutil.which("micropython", path=os.path.dirname(sys.executable)) or "micropython"
T0 = 1_000_000.0  # fake host clock origin


class FakeClock:
    """Host clock the test controls. `step` advances it on every read, so that
    drivers which spin on a busy bit make progress."""

    def __init__(self, t=T0, step=0.0):
        self.t = t
        self.step = step

    def __call__(self):
        self.t += self.step
        return self.t


def regs(model, start=0, n=0x13):
    model.writeto(0x68, bytes((start,)))
    buf = bytearray(n)
    model.readfrom_into(0x68, buf)
    return buf


def bcd(v):
    return (v // 10) << 4 | v % 10


def time_regs(t):
    """Registers 0x00-0x06 for a datetime in 24-hour mode, day register = weekday + 1."""
    return bytes((bcd(t.second), bcd(t.minute), bcd(t.hour), t.weekday() + 1,
                  bcd(t.day), bcd(t.month) | (0x80 if t.year >= 2100 else 0), bcd(t.year % 100)))


# ---------------------------------------------------------------- raw register level


def test_power_on_state():
    m = DS3231Model(clock=FakeClock())
    r = regs(m)
    # 2000-01-01 00:00:00, day 1; alarms clear; control 0x1C; status 0x88; 24.25 C
    assert r[0:7] == bytes((0, 0, 0, 1, 1, 1, 0))
    assert r[0x0E] == 0x1C
    assert r[0x0F] == 0x88
    assert r[0x10] == 0
    assert (r[0x11], r[0x12]) == (24, 0x40)
    assert not m.int_asserted()


def test_wrong_address_nacks_and_empty_write_probes():
    m = DS3231Model(clock=FakeClock())
    m.writeto(0x68, b"")  # the probe every driver sends must ACK
    for call in (lambda: m.writeto(0x57, b""), lambda: m.writeto(0x69, b"\x00\x01"),
                 lambda: m.readfrom_into(0x50, bytearray(1))):
        with pytest.raises(OSError) as e:
            call()
        assert e.value.errno == 19
    assert BusioI2C(m).scan() == [0x68]


def test_pointer_auto_increments_and_wraps_after_0x12():
    clock = FakeClock()
    m = DS3231Model(clock=clock)
    # read: temperature MSB, LSB, then wraps to seconds and minutes
    assert regs(m, 0x11, 4) == bytes((24, 0x40, 0, 0))
    # the pointer continues where the last read stopped (now at 0x02: hours)
    buf = bytearray(1)
    m.readfrom_into(0x68, buf)
    assert buf[0] == 0x00
    # write: aging, the read-only temperature pair is skipped, then seconds/minutes
    m.writeto(0x68, bytes((0x10, 0xFB, 0x55, 0x55, 0x30, 0x12)))
    r = regs(m)
    assert r[0x10] == 0xFB
    assert (r[0x11], r[0x12]) == (24, 0x40)
    assert (r[0], r[1]) == (0x30, 0x12)


def test_alarm_and_osf_flags_only_clear():
    clock = FakeClock()
    m = DS3231Model(clock=clock)
    m.writeto(0x68, bytes((0x0F, 0x00)))
    assert regs(m, 0x0F, 1)[0] == 0x00  # OSF and EN32kHz cleared
    m.writeto(0x68, bytes((0x0F, 0xFF)))
    assert regs(m, 0x0F, 1)[0] == 0x08  # writing 1 sets only EN32kHz; BSY reads 0
    # alarm 1 and 2 "every second" / "every minute": both flags set at 00:01:00
    m.writeto(0x68, bytes((0x07, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80)))
    clock.t += 60
    assert regs(m, 0x0F, 1)[0] == 0x0B
    m.writeto(0x68, bytes((0x0F, 0xFF)))
    assert regs(m, 0x0F, 1)[0] == 0x0B  # a 1 does not clear
    m.writeto(0x68, bytes((0x0F, 0x0A)))
    assert regs(m, 0x0F, 1)[0] == 0x0A  # 0 clears A1F only, A2F still pending


def test_int_pin_follows_enabled_flags_and_intcn():
    clock = FakeClock()
    m = DS3231Model(clock=clock)
    m.writeto(0x68, bytes((0x07, 0x80, 0x80, 0x80, 0x80)))  # alarm 1 every second
    assert m.next_event_in() is None  # A1IE off: the pin cannot move by itself
    m.writeto(0x68, bytes((0x0E, 0x1D)))  # INTCN + A1IE
    assert m.next_event_in() == pytest.approx(1.0)
    clock.t += 1
    assert m.int_asserted()
    assert m.next_event_in() is None  # only clearing A1F releases it
    m.writeto(0x68, bytes((0x0E, 0x19)))  # INTCN=0: the pin outputs the square wave
    assert not m.int_asserted()
    m.writeto(0x68, bytes((0x0E, 0x1D)))
    m.writeto(0x68, bytes((0x0F, 0x00)))
    assert not m.int_asserted()


def test_conversion_busy_clears_by_itself():
    clock = FakeClock()
    m = DS3231Model(clock=clock)
    m.writeto(0x68, bytes((0x0E, 0x3C)))  # CONV
    r = regs(m, 0x0E, 2)
    assert r[0] & 0x20 and r[1] & 0x04  # CONV and BSY
    clock.t += 0.25
    r = regs(m, 0x0E, 2)
    assert r[0] == 0x1C and not r[1] & 0x04


def test_time_runs_from_host_clock_and_rolls_over_the_century():
    clock = FakeClock()
    m = DS3231Model(clock=clock)
    m.writeto(0x68, b"\x00" + time_regs(dt.datetime(2099, 12, 31, 23, 59, 58)))
    clock.t += 2.5
    r = regs(m, 0, 7)
    assert r == bytes((0, 0, 0, 5, 1, 0x81, 0))  # 2100-01-01, century bit set, day 4 + 1


def test_twelve_hour_mode():
    clock = FakeClock()
    m = DS3231Model(clock=clock)
    # 11:59:59 PM in 12-hour mode, Friday 2026-11-27
    m.writeto(0x68, bytes((0x00, 0x59, 0x59, 0x40 | 0x20 | 0x11, 5, 0x27, 0x11, 0x26)))
    clock.t += 1
    r = regs(m, 0, 7)
    assert r == bytes((0, 0, 0x40 | 0x12, 6, 0x28, 0x11, 0x26))  # 12:00:00 AM next day
    clock.t += 13 * 3600
    assert regs(m, 2, 1)[0] == 0x40 | 0x20 | 0x01  # 1 PM


def test_writing_minutes_keeps_the_sub_second_phase():
    clock = FakeClock()
    m = DS3231Model(clock=clock)
    clock.t = T0 + 10.7
    m.writeto(0x68, bytes((0x01, 0x05)))  # minutes only: 00:05:10.7
    clock.t = T0 + 11.05
    assert regs(m, 0, 2) == bytes((0x11, 0x05))
    m.writeto(0x68, bytes((0x00, 0x00)))  # seconds: the countdown chain restarts
    clock.t = T0 + 12.04
    assert regs(m, 0, 1)[0] == 0x00


# Alarm masks, per the datasheet's tables: kind -> mask bits set on (sec, min, hour, day)
A1_KINDS = ("secondly", "minutely", "hourly", "daily", "weekly", "monthly")
A2_KINDS = ("minutely", "hourly", "daily", "weekly", "monthly")


def alarm_regs(kind, t, alarm2):
    compared = {"secondly": 0, "minutely": 1, "hourly": 2, "daily": 3, "weekly": 4, "monthly": 4}[kind]
    day = (0x40 | (t.weekday() + 1)) if kind == "weekly" else bcd(t.day)
    fields = [bcd(t.second), bcd(t.minute), bcd(t.hour), day]
    out = bytes(f | (0 if i < compared else 0x80) for i, f in enumerate(fields))
    return out[1:] if alarm2 else out


def reference_next(start, kind, a, alarm2):
    """First datetime after `start` that the alarm matches, by calendar arithmetic."""
    if alarm2:
        a = a.replace(second=0)
    if kind == "secondly":
        return start + dt.timedelta(seconds=1)
    if kind == "minutely":
        c = start.replace(second=a.second)
        step = dt.timedelta(minutes=1)
    elif kind == "hourly":
        c = start.replace(minute=a.minute, second=a.second)
        step = dt.timedelta(hours=1)
    else:
        c = start.replace(hour=a.hour, minute=a.minute, second=a.second)
        step = dt.timedelta(days=1)
    while c <= start or (kind == "weekly" and c.weekday() != a.weekday()) or (
            kind == "monthly" and c.day != a.day):
        c += step
    return c


@settings(max_examples=150, deadline=None)
@given(
    start=st.datetimes(dt.datetime(2000, 1, 1), dt.datetime(2099, 10, 1)),
    alarm=st.datetimes(dt.datetime(2001, 1, 1), dt.datetime(2001, 12, 31)),
    alarm2=st.booleans(),
    kind_i=st.integers(0, 5),
)
# date 31, just missed on Jan 31: February has none, next match Mar 31 (59 days on)
@example(start=dt.datetime(2026, 1, 31, 12, 0, 1), alarm=dt.datetime(2001, 1, 31, 12, 0, 0),
         alarm2=False, kind_i=5)
def test_alarm_fires_at_exactly_the_matching_second(start, alarm, alarm2, kind_i):
    start = start.replace(microsecond=0)
    kinds = A2_KINDS if alarm2 else A1_KINDS
    kind = kinds[kind_i % len(kinds)]
    clock = FakeClock()
    m = DS3231Model(clock=clock)
    m.writeto(0x68, b"\x00" + time_regs(start))
    m.writeto(0x68, bytes((0x0B if alarm2 else 0x07,)) + alarm_regs(kind, alarm, alarm2))
    m.writeto(0x68, bytes((0x0E, 0x1E if alarm2 else 0x1D, 0x00)))  # INTCN + AxIE, flags clear
    flag = 0x02 if alarm2 else 0x01
    gap = (reference_next(start, kind, alarm, alarm2) - start).total_seconds()
    assert m.next_event_in() == pytest.approx(gap)
    clock.t = T0 + gap - 0.001  # one millisecond early, after a long power-off gap
    assert not regs(m, 0x0F, 1)[0] & flag
    clock.t = T0 + gap
    assert regs(m, 0x0F, 1)[0] & flag
    assert m.int_asserted()


# ---------------------------------------------------------------- persistence


def slots(path):
    with open(path, "rb") as f:
        data = f.read()
    return [json.loads(data[i:i + 512]) for i in (0, 512)]


def test_state_survives_reboot_and_a_torn_write(tmp_path):
    path = str(tmp_path / "rtc.json")
    clock = FakeClock()
    m = DS3231Model(path, clock)
    m.writeto(0x68, b"\x00" + time_regs(dt.datetime(2026, 11, 26, 8, 0, 0)) + b"\x80\x80\x80\x80")
    m.writeto(0x68, bytes((0x0F, 0x08)))  # clear OSF
    m.close()
    clock.t += 100.5
    again = DS3231Model(path, clock)
    # still counting, alarm 1 (every second) flagged while off, OSF still clear
    assert regs(again, 0, 7) == time_regs(dt.datetime(2026, 11, 26, 8, 1, 40))
    assert regs(again, 0x0F, 1)[0] == 0x09
    again.close()
    # a kill in the middle of the last write (clearing OSF) tears its record: the
    # chip comes back with the write before it, not in its power-on state
    newest = max((0, 1), key=lambda i: slots(path)[i]["seq"])
    with open(path, "r+b") as f:
        f.seek(newest * 512 + 30)
        f.write(b"\x00" * 10)
    torn = DS3231Model(path, clock)
    assert regs(torn, 0, 7) == time_regs(dt.datetime(2026, 11, 26, 8, 1, 40))
    assert regs(torn, 0x0F, 1)[0] & 0x80
    torn.close()


def test_corrupt_state_file_is_power_on(tmp_path):
    path = str(tmp_path / "rtc.json")
    with open(path, "w") as f:
        f.write('{"seq": 1, "regs": [1, 2')
    clock = FakeClock(T0 + 12.5)
    fresh = DS3231Model(path, clock)
    assert regs(fresh, 0x0E, 2) == b"\x1c\x88"
    assert regs(fresh, 0, 3) == b"\x00\x00\x00"
    fresh.close()
    clock.t += 3
    again = DS3231Model(path, clock)
    assert regs(again, 0, 3) == b"\x03\x00\x00"  # the power-on state kept counting
    again.close()


# ---------------------------------------------------------------- Adafruit driver


@pytest.fixture
def ada():
    clock = FakeClock()
    model = DS3231Model(clock=clock)
    return adafruit_ds3231.DS3231(BusioI2C(model)), model, clock


def test_adafruit_datetime_round_trip_and_lost_power(ada):
    rtc, _, clock = ada
    assert rtc.lost_power  # fresh chip: OSF set at power-on
    t = time.struct_time((2026, 11, 26, 15, 14, 15, 3, -1, -1))
    rtc.datetime = t
    assert not rtc.lost_power  # the Adafruit setter clears OSF
    assert tuple(rtc.datetime)[:7] == (2026, 11, 26, 15, 14, 15, 3)
    clock.t += 61
    assert tuple(rtc.datetime)[:7] == (2026, 11, 26, 15, 15, 16, 3)


def test_adafruit_alarm1_daily_exact_second(ada):
    rtc, model, clock = ada
    rtc.datetime = time.struct_time((2026, 11, 26, 11, 59, 57, 3, -1, -1))
    rtc.alarm1 = (time.struct_time((2017, 1, 1, 12, 0, 0, 0, -1, -1)), "daily")
    rtc.alarm1_interrupt = True
    assert rtc.alarm1[1] == "daily"
    assert tuple(rtc.alarm1[0])[3:6] == (12, 0, 0)
    clock.t = T0 + 2.999  # 11:59:59.999
    assert not rtc.alarm1_status
    assert not model.int_asserted()
    clock.t = T0 + 3
    assert rtc.alarm1_status
    assert model.int_asserted()
    rtc.alarm1_status = False
    assert not model.int_asserted()
    clock.t = T0 + 3 + 86399.9  # 11:59:59.9 the next day: not yet
    assert not rtc.alarm1_status
    clock.t = T0 + 3 + 86400
    assert rtc.alarm1_status


def test_adafruit_alarm2_weekly(ada):
    rtc, _, clock = ada
    rtc.datetime = time.struct_time((2026, 11, 26, 9, 0, 0, 3, -1, -1))  # Thursday
    rtc.alarm2 = (time.struct_time((2017, 1, 1, 8, 30, 0, 0, -1, -1)), "weekly")  # Mondays
    rtc.alarm2_status = False
    until_monday = (3 * 24 + 23) * 3600 + 30 * 60
    clock.t = T0 + until_monday - 1
    assert not rtc.alarm2_status
    clock.t = T0 + until_monday
    assert rtc.alarm2_status


def test_adafruit_temperature_calibration_and_conversion(ada):
    rtc, model, clock = ada
    assert rtc.temperature == 24.25
    clock.step = 0.001  # the driver spins on BUSY/CONV: let host time pass per read
    for value in (-128, -5, 0, 127):
        rtc.calibration = value  # forces a conversion, which must complete
        assert rtc.calibration == value
    assert rtc.force_temperature_conversion() == 24.25
    r = regs(model, 0x0E, 2)
    assert not r[0] & 0x20 and not r[1] & 0x04


# ---------------------------------------------------------------- firmware driver in micropython

FW_SCRIPT = r"""
import sys, json
sys.path.insert(0, ROOT + "/firmware/lib")
sys.path.insert(0, ROOT + "/host_tools/vboard")
from ds3231 import DS3231, to_seconds, from_seconds
from ds3231_model import DS3231Model

NOW = [START]

class I2C:
    # machine.I2C's memory API, as hal/unix.py builds it on the model
    def __init__(self, dev):
        self.dev = dev
    def readfrom_mem_into(self, addr, mem, buf):
        self.dev.writeto(addr, bytes((mem,)))
        self.dev.readfrom_into(addr, buf)
    def writeto_mem(self, addr, mem, buf):
        self.dev.writeto(addr, bytes((mem,)) + bytes(buf))

FAULTS = {}

def board(path):
    m = DS3231Model(path, lambda: NOW[0], lambda: FAULTS)
    return m, I2C(m), DS3231(I2C(m))

out = {}
def rec(k, v):
    out[k] = v

def phase_set(path):
    m, i2c, rtc = board(path)
    rec("fresh_lost_power", rtc.lost_power())
    rec("fresh_time", rtc.datetime())
    rtc.set_datetime((2026, 11, 26, 11, 59, 58))
    rec("time", rtc.datetime())
    rec("lost_power", rtc.lost_power())
    rec("temperature", rtc.temperature())
    rtc.set_alarm1("daily", 12, 0, 0)
    rtc.enable_alarm1_int()
    i2c.writeto_mem(0x68, 0x0B, b"\x80\x80\x80")  # alarm 2: every minute
    seen = []
    for step in (1.0, 0.999, 0.001):
        NOW[0] += step
        seen.append([rtc.alarm1_fired(), m.int_asserted()])
    rec("alarm_seen", seen)
    rtc.clear_alarm1()
    rec("after_clear", [rtc.alarm1_fired(), m.int_asserted(), i2c_status(i2c)])
    rtc.set_alarm1("daily", 15, 0, 0)  # falls due while the board is off

def phase_reboot(path):
    m, i2c, rtc = board(path)
    rec("time", rtc.datetime())
    rec("lost_power", rtc.lost_power())
    rec("alarm_fired_while_off", rtc.alarm1_fired())
    rec("int", m.int_asserted())

def phase_misc(path):
    m, i2c, rtc = board(None)
    bad = []
    for y in (2100, 2150, 1999):
        try:
            rtc.set_datetime((y, 6, 1, 0, 0, 0))
        except ValueError as e:
            bad.append(str(e))
    rec("years_refused", bad)
    rtc.set_datetime((2099, 12, 31, 23, 59, 59))
    NOW[0] += 1
    rec("century", rtc.datetime())
    bad = []
    for args in ((2026, 2, 29, 0, 0, 0), (2026, 13, 1, 0, 0, 0), (1999, 1, 1, 0, 0, 0),
                 (2026, 1, 1, 24, 0, 0)):
        try:
            rtc.set_datetime(args)
        except ValueError:
            bad.append(args)
    rec("rejected", len(bad))
    rec("kept", rtc.datetime())
    kinds = []
    for kind, day in (("second", None), ("minute", None), ("hourly", None), ("daily", None),
                      ("weekly", 0), ("monthly", 31)):
        rtc.set_alarm1(kind, 7, 8, 9, day)
        b = bytearray(4)
        i2c.readfrom_mem_into(0x68, 0x07, b)
        kinds.append(list(b))
    rec("alarm_regs", kinds)
    rec("epoch", [to_seconds((2000, 1, 1, 0, 0, 0)), list(from_seconds(0)),
                  to_seconds((2026, 11, 26, 12, 0, 0)), list(from_seconds(to_seconds((2024, 2, 29, 23, 59, 59))))])

def i2c_status(i2c):
    b = bytearray(1)
    i2c.readfrom_mem_into(0x68, 0x0F, b)
    return b[0]

def phase_nack(path):
    m, i2c, rtc = board(path)
    rtc.set_datetime((2026, 11, 26, 12, 0, 0))
    FAULTS.update(nack=2, nack_seq=1)
    rec("retried", rtc.datetime())  # two transfers fail, the third try answers
    FAULTS.update(nack=4, nack_seq=2)
    try:
        rtc.datetime()
        rec("error", None)
    except OSError as e:
        rec("error", [e.errno, str(e)])
    rec("after", rtc.datetime())  # the fourth failure was the next call's first try
    m.close()
    m, i2c, rtc = board(path)  # a reset: request 2 was used up, it is not replayed
    rec("after_reset", rtc.datetime())

def phase_cut(path):
    m, i2c, rtc = board(path)
    rtc.set_datetime((2026, 11, 26, 12, 0, 0))
    m.close()
    FAULTS.update(battery=False, cut=NOW[0] + 10.5)  # the simulator cut the power 10.5 s later
    NOW[0] += 3600  # off for an hour
    m, i2c, rtc = board(path)
    rec("cut", [rtc.datetime(), rtc.lost_power()])
    rtc.set_datetime((2026, 11, 26, 14, 0, 0))
    m.close()
    NOW[0] += 60  # reset: the same cut is not applied twice
    m, i2c, rtc = board(path)
    rec("reset", [rtc.datetime(), rtc.lost_power()])

globals()["phase_" + PHASE](PATH)
print(json.dumps(out))
"""


def run_fw(phase, path, start):
    head = "ROOT = %r\nSTART = %r\nPHASE = %r\nPATH = %r\n" % (ROOT, start, phase, path)
    p = subprocess.run([MICROPYTHON, "-c", head + FW_SCRIPT], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr + p.stdout
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_firmware_driver_set_time_alarm_and_flags(tmp_path):
    path = str(tmp_path / "rtc.json")
    r = run_fw("set", path, T0)
    assert r["fresh_lost_power"] is True
    assert r["fresh_time"] == [2000, 1, 1, 0, 0, 0, 0]
    assert r["time"] == [2026, 11, 26, 11, 59, 58, 3]  # Thursday
    assert r["lost_power"] is False
    assert r["temperature"] == 24.25
    # 11:59:59, 11:59:59.999, 12:00:00 -> alarm 1 and the INT pin exactly at 12:00:00
    assert r["alarm_seen"] == [[False, False], [False, False], [True, True]]
    # clearing A1F releases INT and keeps the pending alarm 2 flag (and EN32kHz)
    assert r["after_clear"] == [False, False, 0x0A]

    # Reboot 5 hours later: a new model from the same battery-backed state
    r = run_fw("reboot", path, T0 + 5 * 3600 + 2.5)
    assert r["time"] == [2026, 11, 26, 17, 0, 0, 3]
    assert r["lost_power"] is False
    assert r["alarm_fired_while_off"] is True
    assert r["int"] is True

    # The state file is interchangeable between the interpreters
    m = DS3231Model(path, FakeClock(T0 + 5 * 3600 + 2.5))
    assert regs(m, 0, 7) == time_regs(dt.datetime(2026, 11, 26, 17, 0, 0))
    m.close()


def test_firmware_driver_calendar_and_alarm_kinds(tmp_path):
    r = run_fw("misc", None, T0)
    # the chip's leap-year rule ends at 2100: such years are refused
    assert r["years_refused"] == ["year %d: the DS3231 counts 2000-2099" % y for y in (2100, 2150, 1999)]
    assert r["century"] == [2100, 1, 1, 0, 0, 0, 4]  # the chip still rolls over into it
    assert r["rejected"] == 4
    assert r["kept"][:6] == [2100, 1, 1, 0, 0, 0]
    m = 0x80
    assert r["alarm_regs"] == [
        [0x09 | m, 0x08 | m, 0x07 | m, m],  # every second
        [0x09, 0x08 | m, 0x07 | m, m],  # seconds match
        [0x09, 0x08, 0x07 | m, m],  # minutes and seconds
        [0x09, 0x08, 0x07, m],  # hours, minutes, seconds
        [0x09, 0x08, 0x07, 0x40 | 1],  # day of week (Monday = 1)
        [0x09, 0x08, 0x07, 0x31],  # date
    ]
    assert r["epoch"] == [0, [2000, 1, 1, 0, 0, 0, 5], 849009600, [2024, 2, 29, 23, 59, 59, 3]]


def test_firmware_driver_retries_a_nack_then_names_the_chip(tmp_path):
    r = run_fw("nack", str(tmp_path / "rtc.json"), T0)
    assert r["retried"][:6] == [2026, 11, 26, 12, 0, 0]
    assert r["error"] == [5, "[Errno 5] EIO: DS3231 at 0x68 not answering (3 tries)"]
    assert r["after"][:6] == [2026, 11, 26, 12, 0, 0]
    assert r["after_reset"][:6] == [2026, 11, 26, 12, 0, 0]


def test_power_cut_with_battery_off_stops_the_clock_and_sets_osf(tmp_path):
    r = run_fw("cut", str(tmp_path / "rtc.json"), T0)
    assert r["cut"] == [[2026, 11, 26, 12, 0, 10, 3], True]  # frozen at the cut, not an hour on
    assert r["reset"] == [[2026, 11, 26, 14, 1, 0, 3], False]
