"""Put MicroPython on a Pico: validate a .uf2, copy it to the RPI-RP2 BOOTSEL
drive, wait for the MicroPython USB serial port; and send a running board to
its bootloader.

The RPI-RP2 drive appears when the Pico is plugged in with BOOTSEL held, or
after enter_bootloader(port). Desktops mount it by themselves (/media/USER/RPI-RP2,
/run/media/USER/RPI-RP2, /Volumes/RPI-RP2); on a headless runner mount it
first (host_tools/RUNNER.md). Any mounted RPI-RP2 drive is found, or name it
with drive=.
"""
import glob
import os
import re
import struct
import subprocess
import sys
import time

from host_tools.ports import list_boards

UF2_BLOCK = 512
UF2_MAGIC_START0 = 0x0A324655
UF2_MAGIC_START1 = 0x9E5D5157
UF2_MAGIC_END = 0x0AB16F30
UF2_FLAG_NOT_MAIN_FLASH = 0x00000001
UF2_FLAG_FAMILY_ID = 0x00002000
RP2040_FAMILY_ID = 0xE48BFF56
INFO_FILE = "INFO_UF2.TXT"
BOOTSEL_BOARD_ID = "RPI-RP2"
# Where desktops mount removable drives, besides what /proc/mounts lists.
_MOUNT_GLOBS = ("/media/*/*", "/run/media/*/*", "/media/*", "/mnt/*", "/Volumes/*")


class UF2Error(Exception):
    """A file that is not an RP2040 UF2, a folder that is not the BOOTSEL drive,
    or a board that did not come back as MicroPython."""


def validate_uf2(path):
    """Check every 512-byte block of path is a UF2 block for the RP2040; returns the
    number of blocks."""
    with open(path, "rb") as f:
        data = f.read()
    if not data or len(data) % UF2_BLOCK:
        raise UF2Error("%s is not a UF2 file: %d bytes is not a whole number of 512-byte blocks" % (path, len(data)))
    for off in range(0, len(data), UF2_BLOCK):
        start0, start1, flags = struct.unpack_from("<3I", data, off)
        family = struct.unpack_from("<I", data, off + 28)[0]
        end = struct.unpack_from("<I", data, off + UF2_BLOCK - 4)[0]
        if (start0, start1, end) != (UF2_MAGIC_START0, UF2_MAGIC_START1, UF2_MAGIC_END):
            raise UF2Error("%s is not a UF2 file: block %d has no UF2 magic numbers" % (path, off // UF2_BLOCK))
        if flags & UF2_FLAG_NOT_MAIN_FLASH:
            continue
        if not flags & UF2_FLAG_FAMILY_ID or family != RP2040_FAMILY_ID:
            raise UF2Error(
                "%s is a UF2 for family 0x%08x, not the RP2040 (0x%08x): download the RPI_PICO build of MicroPython"
                % (path, family if flags & UF2_FLAG_FAMILY_ID else 0, RP2040_FAMILY_ID)
            )
    return len(data) // UF2_BLOCK


def is_bootsel_drive(path):
    """True when path is a mounted RP2040 boot ROM drive (INFO_UF2.TXT names RPI-RP2)."""
    try:
        with open(os.path.join(path, INFO_FILE), encoding="ascii", errors="replace") as f:
            return BOOTSEL_BOARD_ID in f.read()
    except OSError:
        return False


def _mount_points():
    points = set()
    try:
        with open("/proc/mounts") as f:
            for line in f:
                # /proc/mounts escapes blanks in paths as octal (\040).
                points.add(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[1]))
    except OSError:
        pass
    for pattern in _MOUNT_GLOBS:
        points.update(glob.glob(pattern))
    return points


def find_bootsel_drives():
    """Mounted RPI-RP2 drives, sorted."""
    return sorted(p for p in _mount_points() if is_bootsel_drive(p))


def _pick_drive(drive):
    if drive is not None:
        if not is_bootsel_drive(drive):
            raise UF2Error(
                "%s is not an RP2040 BOOTSEL drive (no %s naming %s in it): hold BOOTSEL while plugging in the Pico,"
                " or run backupctl bootloader PORT, then give the folder the RPI-RP2 drive is mounted at"
                % (drive, INFO_FILE, BOOTSEL_BOARD_ID)
            )
        return drive
    drives = find_bootsel_drives()
    if not drives:
        raise UF2Error(
            "no RPI-RP2 drive is mounted: hold BOOTSEL while plugging in the Pico (or run backupctl bootloader PORT),"
            " mount the drive if nothing does it for you, and try again"
        )
    if len(drives) > 1:
        raise UF2Error("several RPI-RP2 drives are mounted (%s): say which with drive=" % ", ".join(drives))
    return drives[0]


def _micropython_ports():
    return {(p.device, p.serial_number) for p in list_boards() if p.micropython}


def install_micropython(uf2_path, drive=None, wait_port_s=30):
    """Copy a MicroPython .uf2 to the BOOTSEL drive; returns the new MicroPython port
    (None when wait_port_s is 0)."""
    validate_uf2(uf2_path)
    drive = _pick_drive(drive)
    before = _micropython_ports()
    with open(uf2_path, "rb") as src, open(os.path.join(drive, os.path.basename(uf2_path)), "wb") as dst:
        dst.write(src.read())
        dst.flush()
        try:
            os.fsync(dst.fileno())
        except OSError:
            # The boot ROM reboots into the new firmware as soon as the last block
            # lands, so the drive may vanish under the final sync.
            pass
    deadline = time.monotonic() + wait_port_s
    while time.monotonic() < deadline:
        new = _micropython_ports() - before
        if new:
            return sorted(new)[0][0]
        time.sleep(0.2)
    if wait_port_s:
        raise UF2Error(
            "copied %s to %s, but no MicroPython port (USB 2e8a:0005) appeared within %g s: is it a MicroPython"
            " build? backupctl ports lists what is attached" % (uf2_path, drive, wait_port_s)
        )
    return None


def enter_bootloader(port, timeout_s=30):
    """Run machine.bootloader() on a running MicroPython board at port (device path
    or URL); it then reappears as the RPI-RP2 drive."""
    is_path = "://" not in port
    if is_path and not os.path.exists(port):
        raise UF2Error("no such port %s: backupctl ports lists what is attached" % port)
    # resume: no soft reset first; --no-follow: the board drops off USB at once,
    # so there is no reply to wait for.
    cmd = [sys.executable, "-m", "mpremote", "connect", port, "resume",
           "exec", "--no-follow", "import machine; machine.bootloader()"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise UF2Error("%s: no answer from MicroPython's REPL within %g s" % (port, timeout_s)) from None
    # mpremote may fail on its way out when the port vanishes: that is success.
    if proc.returncode != 0 and not (is_path and not os.path.exists(port)):
        raise UF2Error("%s: could not run machine.bootloader(): %s" % (port, (proc.stdout + proc.stderr).strip()))
