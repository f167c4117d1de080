# Board support for a Raspberry Pi Pico running the MicroPython rp2 port.
# Pins and buses come from /board.json, written at flash time from
# board_configs/<role>.toml.
import asyncio
import select
import sys
import time
import vfs
from binascii import hexlify

import machine
from micropython import const

NAME = "rp2"

# The receive ring holds 44 ms of the wire at 921600 baud while asyncio is busy
# elsewhere; transmit needs little, as the link keeps every frame it sent until
# acknowledged in its own ring (lib/link.py), and its writes wait for room.
_UART_RXBUF = const(4096)
_UART_TXBUF = const(2048)
# Longest period the RP2040 watchdog can count.
_WDT_MAX_MS = const(8388)

from hal.boardfile import board  # noqa: F401  (part of the HAL interface)


def uart(n):
    c = board()["uart%d" % n]
    # timeout=0: readinto() returns what is buffered (or None), never waits.
    return machine.UART(
        c["id"],
        baudrate=c["baud"],
        tx=machine.Pin(c["tx"]),
        rx=machine.Pin(c["rx"]),
        txbuf=_UART_TXBUF,
        rxbuf=_UART_RXBUF,
        timeout=0,
    )


def _unstick_i2c(sda, scl):
    # A reset in the middle of a DS3231 read can leave the chip driving SDA low,
    # waiting for clocks to finish its byte: every later transfer then fails.
    # Clock SCL (open drain, by hand) until it lets go, at most 9 bits, then
    # send a STOP (SDA rising while SCL is high).
    d = machine.Pin(sda, machine.Pin.IN, machine.Pin.PULL_UP)
    if d.value():
        return
    k = machine.Pin(scl, machine.Pin.OPEN_DRAIN, value=1)
    for _ in range(9):
        k(0)
        time.sleep_us(5)
        k(1)
        time.sleep_us(5)
        if d.value():
            break
    d.init(machine.Pin.OPEN_DRAIN, value=0)
    time.sleep_us(5)
    d(1)
    time.sleep_us(5)


def i2c():
    c = board()["i2c"]
    _unstick_i2c(c["sda"], c["scl"])
    return machine.I2C(c["id"], sda=machine.Pin(c["sda"]), scl=machine.Pin(c["scl"]), freq=c["freq"])


class _AlarmPin:
    # The DS3231 pulls INT low when an alarm fires; only that edge matters.
    def __init__(self, pin):
        self._pin = pin

    def irq(self, handler=None):
        return self._pin.irq(handler, machine.Pin.IRQ_FALLING)

    def value(self):
        return self._pin.value()


def rtc_int():
    # INT/SQW is open drain: the internal pull-up holds it high when idle.
    return _AlarmPin(machine.Pin(board()["i2c"]["rtc_int"], machine.Pin.IN, machine.Pin.PULL_UP))


def mount_sd(path="/sd"):
    import sdspi  # the project's driver (lib/sdspi.py): the virtual board runs the same

    c = board()["sd"]
    spi = machine.SPI(c["spi"], sck=machine.Pin(c["sck"]), mosi=machine.Pin(c["mosi"]), miso=machine.Pin(c["miso"]))
    # The driver identifies the card at 400 kHz, then switches to baud.
    sd = sdspi.SDCard(spi, machine.Pin(c["cs"], machine.Pin.OUT, value=1), baudrate=c["baud"])
    # stubs derive VfsFat from AbstractBlockDev and want that class, not its protocol
    vfs.mount(vfs.VfsFat(sd), path)  # type: ignore[abstract, arg-type]
    return sd


class _Console:
    # sys.stdin.buffer.readinto() blocks until the whole buffer is full and the
    # rp2 port cannot say how much is buffered, so wait for the first byte
    # through asyncio, then take one byte at a time while ipoll(0) says there
    # is more: unlike poll(), it allocates no list per byte.
    def __init__(self):
        self._stream = asyncio.StreamReader(sys.stdin.buffer)
        self._poll = select.poll()
        self._poll.register(sys.stdin, select.POLLIN)
        self._one = bytearray(1)

    async def readinto(self, buf):
        one = self._one
        await self._stream.readinto(one)
        buf[0] = one[0]
        n = 1
        more = self._poll.ipoll
        read = sys.stdin.buffer.readinto  # type: ignore[union-attr]  # typed BinaryIO, which has no readinto
        while n < len(buf):
            for _ in more(0):
                break
            else:
                break  # nothing more buffered
            read(one)
            buf[n] = one[0]
            n += 1
        return n


def console_in():
    return _Console()


# Watchdog scratch register 0: kept through a watchdog reset (machine.reset()
# is one on the RP2040), cleared at power-on. reset() leaves _REBOOT there.
_SCRATCH0 = const(0x4005800C)
_REBOOT = const(0x5EB0)
# The microsecond timer runs on through a soft reset but restarts at 0 on a
# hard one, and boot.py asks well within this time after a hard reset.
_SOFT_AFTER_MS = const(3000)
_cause = None
_wdt = None
_grace = None


def reset():
    machine.mem32[_SCRATCH0] = _REBOOT
    machine.reset()


def reset_cause():
    # "power-on", "watchdog", "reboot" (reset()) or "soft" (Ctrl-D, mpremote);
    # machine.reset_cause() alone says WDT_RESET for both of the middle two and
    # does not change at a soft reset.
    global _cause
    if _cause is None:
        # raw value, not ticks_diff(): that turns negative after 6 days of uptime
        if time.ticks_ms() > _SOFT_AFTER_MS:  # type: ignore[operator]  # stubs: opaque ticks
            _cause = "soft"
        elif machine.mem32[_SCRATCH0] == _REBOOT:
            machine.mem32[_SCRATCH0] = 0
            _cause = "reboot"
        else:
            _cause = "watchdog" if machine.reset_cause() == machine.WDT_RESET else "power-on"
    return _cause


def wdt(timeout_ms):
    # Once armed the RP2040 watchdog cannot be stopped, not even by a soft reset.
    global _wdt
    _wdt = machine.WDT(timeout=min(timeout_ms, _WDT_MAX_MS))
    return _wdt


def repl_grace(ms):
    # Feed the watchdog from a timer interrupt for `ms` (0: stop now), so that
    # the REPL stays usable while the firmware is not running. A soft reset
    # stops the timer; boot.py starts it again.
    global _grace
    if _grace:
        _grace.deinit()
        _grace = None
    if ms > 0 and _wdt:
        end = time.ticks_add(time.ticks_ms(), ms)

        def tick(t):
            if time.ticks_diff(end, time.ticks_ms()) > 0:
                _wdt.feed()
            else:
                t.deinit()  # the watchdog resets the board one period later

        _grace = machine.Timer(-1, period=1000, callback=tick)  # -1: a software timer


def uid():
    return hexlify(machine.unique_id()).decode()
