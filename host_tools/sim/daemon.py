"""The simulator daemon: two virtual boards and the wire between their UART0s,
controlled over a unix socket in the state folder (one JSON request per
connection). Started by `backupctl sim up`; stopped by `backupctl sim down`.
"""
import argparse
import json
import os
import signal
import socket
import sys
import threading
import time

from host_tools.sim.board import VirtualBoard
from host_tools.sim.client import recv_line
from host_tools.sim.wire import Wire

BOARDS = ("controller", "backupdev")


class Sim:
    def __init__(self, state_dir, baud, boards=None):
        self.dir = os.path.abspath(state_dir)
        os.makedirs(self.dir, exist_ok=True)
        boards = boards or {b: b for b in BOARDS}
        self.wire = Wire(baud, paths=(os.path.join(self.dir, "wire-controller"),
                                      os.path.join(self.dir, "wire-backupdev")))
        self.baud = baud
        self.boards = {name: VirtualBoard(name, bf, self.dir, os.path.join(self.dir, "wire-" + name), baud)
                       for name, bf in boards.items()}
        self.done = threading.Event()

    def start(self):
        self.wire.start()
        for b in self.boards.values():
            b.prepare()
            b.open_console()
            b.power_on()

    def close(self):
        for b in self.boards.values():
            b.close()
        self.wire.close()

    def status(self):
        return {"state_dir": self.dir, "pid": os.getpid(), "baud": self.baud,
                "boards": {n: b.state() for n, b in self.boards.items()}}

    def handle(self, req):
        cmd = req.get("cmd")
        if cmd == "status":
            return self.status()
        if cmd == "down":
            self.done.set()
            return {"stopping": True}
        if cmd == "power":
            b = self.boards[req["board"]]
            {"on": b.power_on, "off": b.power_off, "cycle": b.reset, "reset": b.reset}[req["action"]]()
            return b.state()
        if cmd == "flash":
            b = self.boards[req["board"]]
            changed = b.flash()
            b.reset()
            return {"changed": changed}
        if cmd == "faults":
            args = {k: req[k] for k in ("ber", "drop", "stall_ms", "stall_every_s") if k in req}
            self.wire.set_faults(**args)
            return self.wire.stats()
        if cmd == "cut":
            self.wire.cut(float(req["seconds"]))
            return self.wire.stats()
        if cmd == "clear":
            self.wire.clear()
            return self.wire.stats()
        if cmd == "wire":
            return self.wire.stats()
        if cmd == "sd":
            return self._sd(self.boards[req["board"]], req)
        raise ValueError("unknown command %r" % cmd)

    @staticmethod
    def _sd(board, req):
        # the SD card model's faults (host_tools/vboard/sd_model.py lists them)
        f = dict(board.part_faults("sd"))
        action = req["action"]
        if action == "eject":
            f["ejected"] = True
        elif action == "insert":
            f.pop("ejected", None)
        elif action == "full":
            f["full"] = True
        elif action == "errors":
            for k in ("read_rate", "write_rate", "blocks"):
                if req.get(k) is not None:
                    f[k] = req[k]
        elif action == "busy":
            f["busy_ms"] = int(req["ms"])
        elif action == "cut":
            # one power cut at the Nth block of multi-block writes from now
            f.update(cut_after=int(req["after"]), torn=req.get("torn", "old"), cut_id=time.time_ns())
        elif action == "clear":
            f = {}
        else:
            raise ValueError("sd action must be eject, insert, full, errors, busy, cut or clear")
        return board.set_part_faults("sd", f)

    def serve(self):
        path = os.path.join(self.dir, "control.sock")
        if os.path.exists(path):
            os.unlink(path)
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(path)
        srv.listen(8)
        srv.settimeout(0.2)
        try:
            while not self.done.is_set():
                try:
                    conn, _ = srv.accept()
                except socket.timeout:
                    continue
                with conn:
                    conn.settimeout(10)
                    try:
                        reply = {"ok": True, "result": self.handle(json.loads(recv_line(conn)))}
                    except Exception as e:  # one bad request must not stop the simulator
                        reply = {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}
                    conn.sendall(json.dumps(reply).encode() + b"\n")
        finally:
            srv.close()
            os.unlink(path)


def main(argv=None):
    ap = argparse.ArgumentParser(description="virtual board pair daemon (use `backupctl sim up`)")
    ap.add_argument("state_dir")
    ap.add_argument("--baud", type=int, default=921600)
    ap.add_argument("--board", action="append", default=[], metavar="NAME=BOARDFILE",
                    help="board file per board (default: controller, backupdev from board_configs/)")
    a = ap.parse_args(argv)
    boards = dict(x.split("=", 1) for x in a.board) or None
    sim = Sim(a.state_dir, a.baud, boards)
    signal.signal(signal.SIGTERM, lambda *_: sim.done.set())
    signal.signal(signal.SIGINT, lambda *_: sim.done.set())
    try:
        sim.start()
        with open(os.path.join(sim.dir, "daemon.pid"), "w") as f:
            f.write(str(os.getpid()))
        sim.serve()
    finally:
        sim.close()
        try:
            os.unlink(os.path.join(sim.dir, "daemon.pid"))
        except FileNotFoundError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
