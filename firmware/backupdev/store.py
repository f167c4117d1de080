# What the tape and disk emulators share on the board's SD card: volume names,
# reading the ANSI VOL1 label, folders, and the device configuration on flash.
import os
import json
import atomic
import ansilabel

TAPES = "/sd/tapes"  # one folder per cartridge: meta.json, data, index
DISKS = "/sd/disks"  # one file per disk: NAME.dsk
ZEROS = bytes(512)


def name_error(name):
    # Volume serials as on a VOL1 label: 1-6 of A-Z 0-9. This also keeps every
    # name a plain 8.3 file name that cannot leave its folder (no ../x, a/b).
    if not 1 <= len(name) <= 6 or not all("A" <= c <= "Z" or "0" <= c <= "9" for c in name):
        return "bad volume name %r: use 1-6 characters A-Z 0-9, e.g. SSC001" % name
    return None


def vol1_name(block):
    # The volume serial of a VOL1 label block, else None.
    try:
        lid, fields = ansilabel.parse(block)
    except ValueError:  # a data block that only looks like a label
        return None
    return fields["volser"] if lid == "VOL1" else None


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def ensure_dir(path):
    if not exists(path):
        os.mkdir(path)


def remove_tree(path):
    # Files first, the folder last (what is left after a power cut is swept at boot).
    for name in os.listdir(path):
        os.remove(path + "/" + name)
    os.rmdir(path)


def free_bytes():
    st = os.statvfs("/sd")
    return st[0] * st[3]


def load_json(path, default):
    try:
        atomic.recover(path)
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def save_json(path, obj):
    # Write-new + rename, then read back and compare (the patent's step 210).
    data = json.dumps(obj).encode()
    atomic.write(path, data)
    with open(path, "rb") as f:
        if f.read() != data:
            raise OSError("config read back differs from what was written")


class Config:
    """Device configuration on flash (survives reboots and SD card swaps):
    address -> device ("library" or "disk NAME"), mount policy and delay."""
    PATH = "/backupdev.json"
    DEFAULTS = {"devices": {"0": "library", "1": "disk BKD001"}, "policy": "auto", "mount_delay_ms": 2000}

    def __init__(self):
        self.d = dict(self.DEFAULTS)
        saved = load_json(self.PATH, {})
        if isinstance(saved, dict):
            self.d.update(saved)

    def __getitem__(self, key):
        return self.d[key]

    def set(self, key, value):
        # Saved first: when the flash write fails, nothing changes.
        d = dict(self.d)
        d[key] = value
        save_json(self.PATH, d)
        self.d = d
