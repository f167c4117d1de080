# Board support for a Raspberry Pi Pico running the MicroPython rp2 port.
# Pins and buses come from /board.json, written at flash time from
# board_configs/<role>.toml.
import asyncio
import select
import sys
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


def i2c():
    c = board()["i2c"]
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
    try:
        import sdcard
    except ImportError:
        raise ImportError("no SD card driver: install it with: mpremote mip install sdcard")
    c = board()["sd"]
    spi = machine.SPI(c["spi"], sck=machine.Pin(c["sck"]), mosi=machine.Pin(c["mosi"]), miso=machine.Pin(c["miso"]))
    # The driver probes the card slowly, then switches to baudrate.
    sd = sdcard.SDCard(spi, machine.Pin(c["cs"], machine.Pin.OUT, value=1), baudrate=c["baud"])
    vfs.mount(vfs.VfsFat(sd), path)  # type: ignore[abstract]  # stubs derive VfsFat from AbstractBlockDev
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


def reset():
    machine.reset()


def wdt(timeout_ms):
    return machine.WDT(timeout=min(timeout_ms, _WDT_MAX_MS))


def uid():
    return hexlify(machine.unique_id()).decode()
