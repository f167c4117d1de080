# Replace a small file so that a power cut at any instant leaves the old or the
# new content. LittleFS renames over an existing file atomically; FAT (the SD
# card) refuses to, so there the old file is removed first and a complete
# PATH.tmp without PATH is the new content, which recover() puts in place.
import os


def write(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    try:
        os.rename(tmp, path)
    except OSError:
        os.remove(path)
        os.rename(tmp, path)


def recover(path):
    """Finish or undo a write() cut short; call before reading path."""
    tmp = path + ".tmp"
    try:
        os.stat(tmp)
    except OSError:
        return
    try:
        os.stat(path)
        os.remove(tmp)  # the old file is still there: tmp may be partial
    except OSError:
        os.rename(tmp, path)  # the old file was removed after tmp was complete
