"""The virtual board's flash: a LittleFS2 image with the Pico's geometry."""
import os

from littlefs import LittleFS

BLOCK_SIZE = 4096
BLOCK_COUNT = 352  # the rp2 port's 1408 KiB filesystem
PROG_SIZE = 256


def _fs(mount=True):
    return LittleFS(block_size=BLOCK_SIZE, block_count=BLOCK_COUNT, prog_size=PROG_SIZE,
                    read_size=PROG_SIZE, mount=mount)


def _walk(fs, top):
    try:
        names = fs.listdir(top)
    except Exception:
        return
    for n in names:
        p = top + "/" + n
        if fs.stat(p).type == 2:  # directory
            yield from _walk(fs, p)
        else:
            yield p


def write_tree(image_path, tree, owned=()):
    """Put tree (board path -> bytes) into the image, keeping every other file
    (tables, state) as flashing a real board keeps its filesystem, except files
    in the `owned` firmware folders that the tree no longer has (a stale .py
    would shadow its new .mpy). Returns the board paths that changed."""
    fs = _fs(mount=False)
    if os.path.exists(image_path) and os.path.getsize(image_path) == BLOCK_SIZE * BLOCK_COUNT:
        with open(image_path, "rb") as f:
            fs.context.buffer = bytearray(f.read())
        try:
            fs.mount()
        except Exception:
            fs.format()
            fs.mount()
    else:
        fs.format()
        fs.mount()
    changed = []
    for top in owned:
        for path in list(_walk(fs, top)):
            if path not in tree:
                fs.remove(path)
                changed.append(path)
    for path in sorted(tree):
        data = tree[path]
        parent = os.path.dirname(path)
        if parent:
            fs.makedirs(parent, exist_ok=True)
        try:
            with fs.open(path, "rb") as f:
                if f.read() == data:
                    continue
        except FileNotFoundError:
            pass
        with fs.open(path, "wb") as f:
            f.write(data)
        changed.append(path)
    tmp = image_path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(fs.context.buffer)
    os.replace(tmp, image_path)
    return changed
