# /board.json, written by `backupctl flash` from board_configs/<role>.toml: the
# same on every board, real or virtual.
import json

_board = None


def board():
    global _board
    if _board is None:
        with open("/board.json") as f:
            _board = json.load(f)
    return _board
