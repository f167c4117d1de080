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
REQUEST_LIMIT = 1 << 16  # bytes; a request is one short JSON line


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
        self._handling = threading.Lock()

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
            if req["action"] in ("off", "cycle"):  # "reset" keeps power on the board's parts
                self._rtc_power_cut(b)
            # a power cycle and the RUN pin both read as power-on on the RP2040
            {"on": b.power_on, "off": b.power_off, "cycle": lambda: b.reset("power-on"),
             "reset": lambda: b.reset("power-on")}[req["action"]]()
            return b.state()
        if cmd == "rtc":
            return self._rtc(self.boards[req.get("board", "controller")], req)
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

    def _rtc(self, b, req):
        # DS3231 faults, read by the board's model (host_tools/vboard/ds3231_model.py)
        if not b.cfg.get("i2c"):
            raise ValueError("board %s has no DS3231" % b.name)
        f = dict(b.part_faults("rtc"))
        action = req.get("action")
        if action == "nack":
            n = int(req["n"])
            if n < 0:
                raise ValueError("nack needs N >= 0")
            # a new request number: the model counts each request's N only once
            f.update(nack=n, nack_seq=f.get("nack_seq", 0) + 1)
        elif action == "battery":
            f["battery"] = bool(req["on"])
        elif action == "clear":
            # a cut that already happened is history, not a fault: it stays
            f = {k: f[k] for k in ("cut", "nack_seq") if k in f}
        else:
            raise ValueError("rtc action must be nack, battery or clear")
        return b.set_part_faults("rtc", f)

    def _rtc_power_cut(self, b):
        # With the backup cell off the DS3231's oscillator stops at the cut; the
        # model resumes from this instant with OSF set at the next power-on (it
        # reads the cut only at boot). Written just before the kill: a file
        # opened after it could take the board's closed console descriptor.
        if b.cfg.get("i2c"):
            f = b.part_faults("rtc")
            if f.get("battery") is False:
                b.set_part_faults("rtc", dict(f, cut=time.time()))

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
        clients = []
        try:
            while not self.done.is_set():
                try:
                    conn, _ = srv.accept()
                except socket.timeout:
                    continue
                except OSError as e:  # e.g. EMFILE: refuse this client, keep serving
                    print("sim: accept failed: %s" % e, file=sys.stderr, flush=True)
                    self.done.wait(0.2)
                    continue
                # A client of its own thread: one that is slow to send its
                # request cannot hold up the others (the request is read
                # outside the lock, the boards are commanded one at a time).
                clients = [t for t in clients if t.is_alive()]
                clients.append(threading.Thread(target=self._client, args=(conn,), daemon=True))
                clients[-1].start()
        finally:
            srv.close()
            os.unlink(path)
            end = time.monotonic() + 2
            for t in clients:  # the answer to `down` goes out before the boards stop
                t.join(max(0, end - time.monotonic()))

    def _client(self, conn):
        with conn:
            conn.settimeout(10)
            try:
                req = json.loads(recv_line(conn, limit=REQUEST_LIMIT))
                if not isinstance(req, dict):
                    raise ValueError("a request is one JSON object")
                with self._handling:
                    reply = {"ok": True, "result": self.handle(req)}
            except Exception as e:  # one bad request must not stop the simulator
                reply = {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}
            try:
                conn.sendall(json.dumps(reply).encode() + b"\n")
            except OSError:
                pass  # the client hung up before its answer: nobody to tell


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
