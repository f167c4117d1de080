# The volumes on the SD card at boot (the VolumeStore the backup engine uses)
# and the `vol ...` commands, whose code (volcli.py) loads on first use.
import lazycmd
import system
from ds3231 import to_seconds
from controller.volumes import VolumeStore


def install(con, rtc):
    """Opens the volumes on the SD card and adds the vol commands; returns the
    VolumeStore (the volume API for the backup engine)."""
    store = VolumeStore(lambda: to_seconds(rtc.datetime()))

    def scan():
        removed, damaged = store.scan()
        for fn in removed:
            con.event("vol_removed", file=fn, reason="creation cut short by a reset or power cut")
        for fn in damaged:
            con.event("vol_damaged", file=fn, reason="no valid header; `vol delete %s --yes` removes it" % fn[:6])

    if system.sd_error is None:  # the card is mounted (or not) by boot.py, before main.py
        scan()
    system.on_sd_mount(scan)  # a card inserted later: its volumes

    def commands():
        from controller import volcli
        volcli.install(con, store)

    lazycmd.lazy(con, {"vol": ("vol COMMAND ...", "create, list, info, delete, read, write, sha (`vol` lists them)")},
                 commands)
    return store
