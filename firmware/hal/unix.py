# Virtual board support: the firmware's view of the hardware that the boot ROM
# (host_tools/vboard/vboot.py) registered as module `vboard_hw`. Mirrors hal/rp2.py.
import sys
import time
import asyncio
import termios
import vfs
import vboard_hw as _hw

NAME = "virtual"
from hal.boardfile import board  # noqa: F401  (part of the HAL interface)


def _raw_nonblocking(fd, isig=True):
    # Raw tty whose read() returns what is there (VMIN=0, VTIME=0): the same
    # contract as machine.UART(timeout=0).readinto on a Pico.
    a = termios.tcgetattr(fd)
    a[0] = 0  # iflag: no CR/NL translation, no flow control
    a[1] = 0  # oflag: no post-processing
    # lflag: no ICANON/ECHO*/IEXTEN; the console keeps ISIG so Ctrl-C still breaks
    # into the REPL, as USB CDC does on a Pico
    a[3] &= ~(0x807A | (0 if isig else 1))
    a[6][6] = 0
    a[6][5] = 0
    termios.tcsetattr(fd, termios.TCSANOW, a)


def uart(n):
    f = _hw.uarts[n]
    _raw_nonblocking(f.fileno(), isig=False)  # a UART has no Ctrl-C
    return f


class _I2C:
    # machine.I2C's memory API on top of the DS3231 model's bus transactions.
    def __init__(self, dev):
        self._dev = dev

    def scan(self):
        return [0x68] if self._dev else []

    def readfrom_mem_into(self, addr, memaddr, buf):
        self._dev.writeto(addr, bytes((memaddr,)))
        self._dev.readfrom_into(addr, buf)

    def readfrom_mem(self, addr, memaddr, n):
        buf = bytearray(n)
        self.readfrom_mem_into(addr, memaddr, buf)
        return buf

    def writeto_mem(self, addr, memaddr, buf):
        self._dev.writeto(addr, bytes((memaddr,)) + bytes(buf))


def i2c():
    if _hw.rtc is None:
        raise OSError(19)
    return _I2C(_hw.rtc)


class _IntPin:
    # DS3231 INT/SQW is open drain, active low. A real pin interrupt fires on
    # the falling edge; here a small task watches the model's output line.
    IRQ_FALLING = 4

    def __init__(self, dev):
        self._dev = dev
        self._task = None

    def value(self):
        return 0 if self._dev.int_asserted() else 1

    def irq(self, handler=None, trigger=IRQ_FALLING):
        if self._task:
            self._task.cancel()
            self._task = None
        if handler:
            self._task = asyncio.create_task(self._watch(handler))

    async def _watch(self, handler):
        last = self.value()
        while True:
            v = self.value()
            if last and not v:
                handler(self)
            last = v
            nxt = self._dev.next_event_in()
            await asyncio.sleep(0.05 if nxt is None else min(max(nxt, 0.01), 0.05))


def rtc_int():
    return _IntPin(_hw.rtc)


class _SPI:
    # machine.SPI on the SD card model's bus: every byte out is a byte in
    def __init__(self, card):
        self._card = card
        self.baudrate = 0

    def init(self, baudrate=1000000, **kw):
        self.baudrate = baudrate  # no pacing: the unix port's Python is the slow part

    def write(self, buf):
        self._card.clock(buf, None, len(buf))

    def readinto(self, buf, write=0xFF):
        self._card.clock(None if write == 0xFF else bytes((write,)) * len(buf), buf, len(buf))

    def write_readinto(self, wbuf, rbuf):
        self._card.clock(wbuf, rbuf, len(wbuf))


class _CS:
    def __init__(self, card):
        self._card = card
        self._v = 1

    def value(self, v=None):
        if v is None:
            return self._v
        self._v = v
        self._card.select(not v)


def mount_sd(path="/sd"):
    import sdspi
    sd = sdspi.SDCard(_SPI(_hw.sd), _CS(_hw.sd), baudrate=board().get("sd", {}).get("baud", 10000000))
    vfs.mount(vfs.VfsFat(sd), path)
    return sd


class _ConsoleIn:
    def __init__(self):
        _raw_nonblocking(0)
        self._s = asyncio.StreamReader(sys.stdin.buffer)

    async def readinto(self, buf):
        while True:
            n = await self._s.readinto(buf)
            if n:
                return n
            await asyncio.sleep_ms(20)  # nobody attached (hang-up): idle


def console_in():
    return _ConsoleIn()


def _ctl(msg):
    # one line to the supervisor; MicroPython writes files unbuffered (and its
    # flush() would fsync, which a FIFO refuses)
    _hw.ctl.write(msg + "\n")


def reset():
    _ctl("reset")
    while True:  # the supervisor kills and restarts this process
        time.sleep(1)


class _WDT:
    def __init__(self, timeout_ms):
        _ctl("wdt %d" % timeout_ms)

    def feed(self):
        _ctl("feed")


def wdt(timeout_ms):
    return _WDT(timeout_ms)


def repl_grace(ms):
    # The supervisor feeds the watchdog for `ms` (0: stops now), as the rp2 HAL's
    # timer interrupt does; a soft reset ends it there too.
    _ctl("grace %d" % ms)


def reset_cause():
    # written by the supervisor before it started this process
    return _hw.reset_cause


def uid():
    return _hw.uid
