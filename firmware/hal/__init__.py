# Board support. The only package that knows whether the firmware runs on a
# real RP2040 (MicroPython rp2 port) or on a virtual board (MicroPython unix
# port started by host_tools/sim). Everything else imports `hal` and uses:
#
#   NAME                 "rp2" or "virtual" (for `version` only; never branch on it)
#   board()              dict from /board.json (pins, uart baud, heap, role)
#   uart(n)              stream for asyncio.StreamReader/StreamWriter; readinto()
#                        returns what is available (int, or None when nothing)
#   i2c()                machine.I2C-like: readfrom_mem_into, writeto_mem, scan
#   rtc_int()            DS3231 INT/SQW pin: .irq(handler) on falling edge, .value()
#   mount_sd(path)       mount the SD card (FAT) at path; returns the block device
#   console_in()         console input: `await c.readinto(buf)` -> n > 0 bytes
#   reset()              hard reset of the board (does not return)
#   wdt(timeout_ms)      hardware watchdog: .feed(); cannot be stopped once armed
#   repl_grace(ms)       feed the watchdog in the background for ms (0: stop), for the REPL
#   reset_cause()        "power-on", "watchdog", "reboot" (reset()) or "soft"
#   uid()                board unique id as hex str
import sys

if sys.platform == "rp2":
    from hal.rp2 import *  # noqa: F401,F403
else:
    from hal.unix import *  # noqa: F401,F403
