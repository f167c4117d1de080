"""A virtual board: a `micropython` process with the Pico's heap, its flash and
SD card as image files, a DS3231 model, UART0 on the virtual wire, and a console
pseudo-terminal whose path stays the same across reboots and power cycles.

Supervisor model: the board process talks to an inner pty; this supervisor
bridges it to the outer (user-facing) pty, restarts the process on reset or
watchdog bite, and powers it off/on on command (kill -9 = a power cut).
"""
import fcntl
import json
import os
import select
import shutil
import subprocess
import termios
import threading
import time
import tty

from host_tools import ROOT
from host_tools.build import FIRMWARE_DIRS, load_board
from host_tools.sim import heapcal
from host_tools.vboard import flashimg, hwfaults

VBOARD = os.path.join(ROOT, "host_tools", "vboard")

def micropython_exe():
    import sys
    exe = os.path.join(os.path.dirname(sys.executable), "micropython")
    return exe if os.path.exists(exe) else (shutil.which("micropython") or "micropython")


def parse_size(s):
    s = str(s).strip().upper()
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(s[-1:], 1)
    return int(s[:-1] if mult > 1 else s) * mult


def _raw(fd, isig=False):
    tty.setraw(fd)
    if isig:
        # Only Ctrl-C is special, as on USB CDC: ^\ and ^Z must stay data, not
        # SIGQUIT/SIGTSTP for the board process.
        a = termios.tcgetattr(fd)
        a[3] |= termios.ISIG
        a[6][termios.VQUIT] = a[6][termios.VSUSP] = b"\0"
        termios.tcsetattr(fd, termios.TCSANOW, a)


class VirtualBoard:
    def __init__(self, name, board_file, state_dir, uart_path, baud=None):
        self.name = name
        self.cfg = load_board(board_file)
        self.cfg["name"] = name
        if baud:  # the wire's line rate is the UART's, as two boards must agree on it
            self.cfg["uart0"]["baud"] = baud
        self.dir = os.path.join(state_dir, name)
        self.uart_path = uart_path
        self.console_path = os.path.join(self.dir, "console")
        self.faults_path = os.path.join(self.dir, "faults.json")
        self.proc = None
        self.powered = False
        self.boots = 0
        self._lock = threading.RLock()
        self._stop = False
        self._inner = None
        # Inner console descriptors of processes that are gone. Only the pump
        # closes them, between two of its iterations: it may be using one
        # outside the lock when _kill() runs, and a descriptor closed then
        # gets its number reused by the next open()/accept() in this process
        # (the daemon's control socket), which the pump would then read.
        self._retired = []
        self._wdt = None  # (timeout_s, deadline)
        self._grace = 0.0  # the REPL grace period feeds the watchdog until then (monotonic)
        self._raw_repl = False  # the board shows the raw REPL (mpremote is driving it)
        self._last_in = b""
        self.heap = None  # (-X heapsize, heap total) for the flashed firmware
        self._log = open(os.path.join(state_dir, name + ".log"), "ab", buffering=0) \
            if os.path.isdir(state_dir) else None

    # --- set-up -------------------------------------------------------------
    def prepare(self, flash=True):
        """Create the board's images (first time) and flash the firmware."""
        os.makedirs(self.dir, exist_ok=True)
        if self._log is None:
            self._log = open(os.path.join(os.path.dirname(self.dir), self.name + ".log"), "ab", buffering=0)
        v = self.cfg.get("virtual", {})
        sd = os.path.join(self.dir, "sd.img")
        if not os.path.exists(sd):
            with open(sd, "wb") as f:
                f.truncate(parse_size(v.get("sd_size", "64M")))  # sparse, formatted at first boot
        rtc = os.path.join(self.dir, "rtc.json")
        if not os.path.exists(rtc):
            open(rtc, "wb").close()
        with open(os.path.join(self.dir, "board.json"), "w") as f:
            json.dump(self.cfg, f)
        if os.path.lexists(os.path.join(self.dir, "uart0")):
            os.unlink(os.path.join(self.dir, "uart0"))
        os.symlink(self.uart_path, os.path.join(self.dir, "uart0"))
        if not os.path.exists(self.faults_path):
            hwfaults.write(self.faults_path, {})
        fifo = os.path.join(self.dir, "ctl.fifo")
        if not os.path.exists(fifo):
            os.mkfifo(fifo)
        if flash or not os.path.exists(os.path.join(self.dir, "flash.img")):
            self.flash()

    def flash(self, mpy=None):
        """Write the firmware into the flash image: precompiled .mpy unless the
        board file's [virtual] mpy = false (the Pico's heap cannot compile it all)."""
        if mpy is None:
            mpy = self.cfg.get("virtual", {}).get("mpy", True)
        tree = heapcal.flash_tree(self.cfg, mpy=mpy)
        self.heap = None  # another firmware: its heap is calibrated again
        return flashimg.write_tree(os.path.join(self.dir, "flash.img"), tree, owned=FIRMWARE_DIRS)

    # --- injected faults of the board's parts (SD card, DS3231) ---------------
    def part_faults(self, part):
        with open(self.faults_path, "rb") as f:
            return json.loads(f.read() or b"{}").get(part) or {}

    def set_part_faults(self, part, faults):
        """Replace the faults of `part`; the part's model sees them at its next access."""
        with self._lock:
            with open(self.faults_path, "rb") as f:
                state = json.loads(f.read() or b"{}")
            state[part] = faults
            hwfaults.write(self.faults_path, state)
        return faults

    # --- the outer console pty ----------------------------------------------
    def open_console(self):
        self._outer, slave = os.openpty()
        _raw(slave)
        name = os.ttyname(slave)
        os.close(slave)  # nobody attached yet; reopened by path by users
        os.set_blocking(self._outer, False)
        if os.path.lexists(self.console_path):
            os.unlink(self.console_path)
        os.symlink(name, self.console_path)
        self._ctl = os.open(os.path.join(self.dir, "ctl.fifo"), os.O_RDWR | os.O_NONBLOCK)
        self._thread = threading.Thread(target=self._bridge, name="board-" + self.name, daemon=True)
        self._thread.start()
        return name

    # --- power --------------------------------------------------------------
    def power_on(self, soft=False, cause="power-on"):
        """Start the board process. soft=True emulates MicroPython's soft reset
        from the raw REPL: the interpreter restarts without running main.py.
        `cause` is what the firmware's hal.reset_cause() will say."""
        with self._lock:
            if self.proc is not None:
                return
            with open(os.path.join(self.dir, "reset_cause"), "w") as f:
                f.write(cause)
            inner, slave = os.openpty()
            _raw(slave, isig=True)  # Ctrl-C -> SIGINT -> KeyboardInterrupt, like USB CDC

            def child():
                os.setsid()
                fcntl.ioctl(0, termios.TIOCSCTTY, 0)

            if self.heap is None:
                # The Pico's heap plus what this firmware needs more on the
                # 64-bit interpreter: the calibration in heapcal.py.
                self.heap = heapcal.heap_for(
                    self.cfg, heapcal.flash_tree(self.cfg, self.cfg.get("virtual", {}).get("mpy", True)))
            self.proc = subprocess.Popen(
                [micropython_exe(), "-X", "heapsize=" + self.heap[0], "-i", os.path.join(VBOARD, "vboot.py"), self.dir]
                + (["--no-main"] if soft else []),
                stdin=slave, stdout=slave, stderr=slave, preexec_fn=child, cwd=self.dir, close_fds=True)
            os.close(slave)
            os.set_blocking(inner, False)
            self._inner = inner
            if cause != "soft":  # as on the RP2040, only a hard reset stops the watchdog
                self._wdt = None
            self._grace = 0.0  # a soft reset stops the rp2 HAL's grace timer too
            self.powered = True
            self.boots += 1

    def power_off(self):
        """Power cut: the process dies wherever it is."""
        with self._lock:
            self.powered = False
            self._wdt = None  # no power, no watchdog: it must not switch the board back on
            self._kill()

    def _kill(self):
        if self.proc is not None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
            self.proc.wait()
            self.proc = None
        if self._inner is not None:
            self._retired.append(self._inner)  # closed by the pump (see __init__)
            self._inner = None

    def _close_retired(self):
        with self._lock:
            while self._retired:
                os.close(self._retired.pop())

    def reset(self, cause="reboot"):
        with self._lock:
            self._kill()
            self.power_on(cause=cause)

    def close(self):
        self._stop = True
        self.power_off()
        if getattr(self, "_thread", None):
            self._thread.join(2)
        self._close_retired()
        for fd in ("_outer", "_ctl"):
            if getattr(self, fd, None) is not None:
                os.close(getattr(self, fd))
                setattr(self, fd, None)
        if os.path.lexists(self.console_path):
            os.unlink(self.console_path)
        if self._log:
            self._log.close()

    # --- the bridge ---------------------------------------------------------
    def _bridge(self):
        while not self._stop:
            try:
                self._pump()
            except Exception as e:  # the console must outlive any one bad event
                self._note("bridge restarted after %s: %s" % (type(e).__name__, e))
                time.sleep(0.05)

    def _pump(self):
        to_board = b""
        to_user = b""
        ctl_buf = b""
        detached_until = 0.0
        while not self._stop:
            self._close_retired()  # the previous iteration is done with them
            with self._lock:
                inner, proc = self._inner, self.proc
            # A console nobody holds reads as EIO at once, every time: look at it
            # only now and then, or this loop spins a core while no user is attached.
            attached = time.monotonic() >= detached_until
            rl = ([self._outer] if attached else []) + [self._ctl] \
                + ([inner] if inner is not None and len(to_user) < 65536 else [])
            wl = ([inner] if inner is not None and to_board else []) + ([self._outer] if to_user else [])
            try:
                r, w, _ = select.select(rl, wl, [], 0.05)
            except (OSError, ValueError):
                continue
            if self._outer in r:
                try:
                    data = os.read(self._outer, 4096)
                    if data:
                        self._last_in = data
                        if b"\x02" in data:
                            self._raw_repl = False
                    if inner is not None:
                        to_board += data
                except OSError:  # EIO: no user attached
                    detached_until = time.monotonic() + 0.05
            if inner is not None and inner in r:
                try:
                    data = os.read(inner, 65536)
                    to_user += data
                    if b"raw REPL; CTRL-B to exit" in data:
                        self._raw_repl = True
                    elif b'Type "help()"' in data:
                        self._raw_repl = False
                    if self._log:
                        self._log.write(data)
                except OSError:
                    pass  # process gone; noticed below
            if self._ctl in r:
                try:
                    ctl_buf += os.read(self._ctl, 256)
                except OSError:
                    pass
                while b"\n" in ctl_buf:
                    line, ctl_buf = ctl_buf.split(b"\n", 1)
                    self._control(line.decode(errors="replace").split())
            if inner is not None and inner in w and to_board:
                try:
                    n = os.write(inner, to_board[:4096])
                    to_board = to_board[n:]
                except OSError:
                    to_board = b""
            if self._outer in w and to_user:
                try:
                    n = os.write(self._outer, to_user[:4096])
                    to_user = to_user[n:]
                except BlockingIOError:
                    pass
                except OSError:
                    to_user = b""  # EIO: nobody attached, output is lost as on USB
            if to_user and self._hung_up():
                to_user = b""
            if proc is not None and proc.poll() is not None:
                with self._lock:
                    if self.proc is proc and self.powered:
                        self._kill()
                        if self._raw_repl and self._last_in.endswith(b"\x04"):
                            # Ctrl-D in the raw REPL is a soft reset on a Pico: the
                            # REPL comes back without main.py (what mpremote expects).
                            self.power_on(soft=True, cause="soft")
                            to_user += b"soft reboot\r\n"
                            to_board = b"\x01"
                        else:
                            # exit from the friendly REPL (Ctrl-D): a soft reset that runs main.py
                            time.sleep(0.05)
                            self.power_on(cause="soft")
            wd = self._wdt
            if wd and time.monotonic() > wd[1]:
                with self._lock:
                    if self._wdt is wd and self.powered:  # not fed meanwhile, nor powered off
                        self._note("watchdog reset")
                        self.reset("watchdog")

    def _hung_up(self):
        p = select.poll()
        p.register(self._outer, select.POLLHUP)
        return any(ev & select.POLLHUP for _, ev in p.poll(0))

    def _control(self, words):
        if not words:
            return
        if words[0] == "reset":
            if words[1:] == ["sd", "power", "cut"]:  # the SD model's event-placed power cut
                self._note("power cut placed by the SD card model")
                self.reset("power-on")
            else:
                self._note("reset requested by firmware")
                self.reset()
        elif words[0] == "wdt" and len(words) == 2:  # machine.WDT(): arms, or re-arms, counting afresh
            t = int(words[1]) / 1000
            self._wdt = (t, max(time.monotonic(), self._grace) + t)
        elif words[0] == "feed" and self._wdt:
            self._wdt = (self._wdt[0], max(time.monotonic(), self._grace) + self._wdt[0])
        elif words[0] == "grace" and len(words) == 2:
            # hal.repl_grace(ms): a timer feeds the watchdog until then (0: stops now)
            self._grace = time.monotonic() + int(words[1]) / 1000
            if self._wdt:
                self._wdt = (self._wdt[0], self._grace + self._wdt[0])

    def _note(self, msg):
        if self._log:
            self._log.write(("\n[sim] %s %s\n" % (time.strftime("%H:%M:%S"), msg)).encode())

    def state(self):
        return {"name": self.name, "role": self.cfg["role"], "console": self.console_path,
                "tty": os.path.realpath(self.console_path), "powered": self.powered,
                "pid": self.proc.pid if self.proc else None, "boots": self.boots, "dir": self.dir}
