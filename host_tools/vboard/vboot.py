# Boot ROM of a virtual board: the part of a Pico that is silicon, not firmware.
# Runs inside `micropython -X heapsize=... -i vboot.py STATE_DIR`. It wires up the
# virtual hardware (flash, SD card, DS3231, UART, reset line), mounts the flash
# image at / exactly as the rp2 port does, then runs /boot.py and /main.py like a Pico.
# After main.py ends (or Ctrl-C), `-i` drops into the REPL, as on a real board.
import sys
import os
import vfs
import json
import time

from ds3231_model import DS3231Model
from sd_model import SDModel
from hwfaults import FaultFile

_FLASH_BLOCK = 4096
_SD_BLOCK = 512


class FileBlockDev:
    # readblocks/writeblocks/ioctl: the block protocol of rp2.Flash and of the SD
    # card driver; the extended (offset) form is what littlefs uses.
    def __init__(self, path, block_size):
        self.f = open(path, "r+b")
        self.bs = block_size
        self.f.seek(0, 2)
        self.count = self.f.tell() // block_size

    def readblocks(self, n, buf, off=0):
        self.f.seek(n * self.bs + off)
        self.f.readinto(buf)

    def writeblocks(self, n, buf, off=None):
        if off is None:
            # plain protocol: erase then program whole blocks
            off = 0
        self.f.seek(n * self.bs + off)
        # Unbuffered: once write() returns the block is in the host's page cache
        # and survives a kill -9 (our power cut), as a finished SD card write
        # survives one. No fsync: that guards against a host crash, which no
        # test simulates, and costs milliseconds per sector.
        self.f.write(buf)

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return self.count
        if op == 5:  # block size
            return self.bs
        if op == 6:  # erase (littlefs); flash erase is implicit here
            return 0
        return 0


class Hardware:
    # Everything hal/unix.py may touch. Registered as module `vboard_hw`.
    def __init__(self, state):
        cfg = json.load(open(state + "/board.json"))
        self.name = cfg["name"]
        self.state = state
        self.flash = FileBlockDev(state + "/flash.img", _FLASH_BLOCK)
        # the card's flash behind the SPI-mode card model that hal/unix.py's SPI bus talks to
        self.sd_img = FileBlockDev(state + "/sd.img", _SD_BLOCK)
        # Opened now: once the flash is mounted at / the host's paths are out of reach.
        self.uarts = {0: open(state + "/uart0", "r+b")}
        # The reset controller and watchdog live outside the CPU: a pipe to the
        # supervisor that restarts this process.
        self.ctl = open(state + "/ctl.fifo", "w")
        self.uid = cfg.get("uid", self.name)
        try:  # why the supervisor (re)started this process
            with open(state + "/reset_cause") as f:
                self.reset_cause = f.read().strip()
        except OSError:
            self.reset_cause = "power-on"
        # faults injected by the simulator (`backupctl sim sd|rtc ...`), per part
        self.faults = FaultFile(state + "/faults.json")
        self.rtc = DS3231Model(state + "/rtc.json", faults=lambda: self.faults.get("rtc")) \
            if cfg.get("i2c") else None
        self.sd = SDModel(self.sd_img, self.faults, self.power_cut, state + "/sd_state")

    def power_cut(self):
        # the SD model's event-placed power cut: the supervisor kills and restarts this process
        self.ctl.write("reset sd power cut\n")
        self.ctl.flush()
        while True:
            time.sleep(1)


def _boot(state):
    hw = Hardware(state)
    sys.modules["vboard_hw"] = hw
    # Factory-formatted SD card: an all-zero boot sector means a fresh image.
    sector = bytearray(_SD_BLOCK)
    hw.sd_img.readblocks(0, sector)
    if sector[510:512] != b"\x55\xaa":
        vfs.VfsFat.mkfs(hw.sd_img)
    vfs.umount("/")
    vfs.mount(vfs.VfsLfs2(hw.flash, progsize=256), "/")
    os.chdir("/")
    sys.path[:] = ["", ".frozen", "/lib"]


def _ballast_size(state):
    # Test rig only (hil_tests/test_heap.py): the size of a bytearray held from
    # before /boot.py for the whole run, as `_b = bytearray(N)` at the top of
    # boot.py on a Pico, to find how much heap the firmware leaves.
    try:
        with open(state + "/ballast") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 0


_n = _ballast_size(sys.argv[1])  # read now: the host's files vanish once / is the flash
_boot(sys.argv[1])
_held = bytearray(_n) if _n else None
del _boot, _ballast_size, _n, FileBlockDev, Hardware
import boot  # noqa: E402,F401
if "--no-main" not in sys.argv:  # a soft reset from the raw REPL skips main.py, as on a Pico
    import main  # noqa: E402,F401
