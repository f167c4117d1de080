"""What goes onto a board: the deploy tree of firmware files plus /board.json."""
import json
import os
import tomllib

from host_tools import BOARD_CONFIGS, FIRMWARE

ROLES = ("controller", "backupdev")
_SHARED = ("hal", "lib")


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
    out = {"main.py": os.path.join(FIRMWARE, "main.py")}
    for top in _SHARED + (role,):
        base = os.path.join(FIRMWARE, top)
        for dirpath, _dirs, files in os.walk(base):
            for fn in sorted(files):
                if fn.endswith(".py"):
                    host = os.path.join(dirpath, fn)
                    out[os.path.relpath(host, FIRMWARE).replace(os.sep, "/")] = host
    return out


def deploy_tree(board):
    """Board path -> bytes for the files to put on a board (sources as .py)."""
    cfg = load_board(board)
    tree = {}
    for dst, src in source_files(cfg["role"]).items():
        with open(src, "rb") as f:
            tree[dst] = f.read()
    tree["board.json"] = json.dumps(cfg, sort_keys=True).encode()
    return tree
