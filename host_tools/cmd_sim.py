"""backupctl sim up|down|status|power|faults|rtc: the virtual board pair."""
import json

from host_tools.sim import client


def register(sub):
    p = sub.add_parser("sim", help="start, stop and inspect the virtual board pair",
                       description="Virtual boards: two `micropython` processes with the Pico's heap, "
                                   "flash and SD images, a DS3231 model and a paced UART wire between them.")
    p.add_argument("--sim", default=None, metavar="DIR", help="state folder (default: $BACKUPCTL_SIM or .sim)")
    s = p.add_subparsers(dest="action", metavar="ACTION")
    s.required = True
    up = s.add_parser("up", help="start both boards and the wire (flashes the current firmware)")
    up.add_argument("--baud", type=int, default=921600, help="UART line rate of the wire (default 921600)")
    s.add_parser("down", help="stop everything the simulator started")
    s.add_parser("status", help="print both console ports and the state folder")
    pw = s.add_parser("power", help="power a virtual board on, off (a power cut) or cycle it")
    pw.add_argument("board", choices=("controller", "backupdev"))
    pw.add_argument("state", choices=("on", "off", "cycle"))
    f = s.add_parser("faults", help="inject faults on the wire")
    f.add_argument("--ber", type=float, help="bit error rate, e.g. 1e-4")
    f.add_argument("--drop", type=float, help="probability of dropping each byte, e.g. 0.02")
    f.add_argument("--stall-ms", type=int, help="stall the line this long ...")
    f.add_argument("--stall-every", type=float, help="... every this many seconds")
    f.add_argument("--cut", type=float, metavar="SECONDS", help="cut the link for SECONDS")
    f.add_argument("--clear", action="store_true", help="remove all faults")
    r = s.add_parser("rtc", help="inject DS3231 faults on the controller",
                     description="Faults of the controller's DS3231 (I2C address 0x68). They survive "
                                 "resets and power cuts, as on the real part.",
                     epilog="examples: `sim rtc nack 3` (the next 3 I2C transfers to 0x68 get no ACK and "
                            "fail with EIO), `sim rtc battery off` then `sim power controller off` or `cycle` (the "
                            "clock stops at the cut; at power-on it resumes from there with OSF set, so "
                            "the scheduler starts nothing until `rtc set`), `sim rtc clear`.")
    rs = r.add_subparsers(dest="rtc_action", metavar="FAULT")
    rs.required = True
    n = rs.add_parser("nack", help="the next N I2C transfers to the DS3231 are not acknowledged")
    n.add_argument("n", type=int, metavar="N", help="how many transfers fail (0 ends a NACK fault)")
    bt = rs.add_parser("battery", help="backup cell on or off (off: a power cut stops the clock, sets OSF)")
    bt.add_argument("state", choices=("on", "off"))
    rs.add_parser("clear", help="remove the DS3231 faults (NACKs, battery back on)")
    p.set_defaults(func=run)


def _print_status(st):
    print("state folder: %s (baud %d)" % (st["state_dir"], st["baud"]))
    for name, b in st["boards"].items():
        print("  %-10s console %s -> %s  %s" % (name, b["console"], b["tty"], "on" if b["powered"] else "OFF"))


def run(a):
    state = a.sim or client.default_state_dir()
    if a.action == "up":
        _print_status(client.up(state, baud=a.baud))
    elif a.action == "down":
        print("stopped" if client.down(state) else "nothing was running in %s" % state)
    elif a.action == "status":
        _print_status(client.call(state, "status"))
    elif a.action == "power":
        action = {"on": "on", "off": "off", "cycle": "cycle"}[a.state]
        print(json.dumps(client.call(state, "power", board=a.board, action=action)))
    elif a.action == "faults":
        if a.clear:
            client.call(state, "clear")
        kw = {k: v for k, v in (("ber", a.ber), ("drop", a.drop), ("stall_ms", a.stall_ms),
                                ("stall_every_s", a.stall_every)) if v is not None}
        if kw:
            client.call(state, "faults", **kw)
        if a.cut:
            client.call(state, "cut", seconds=a.cut)
        print(json.dumps(client.call(state, "wire")))
    elif a.action == "rtc":
        kw = {"n": a.n} if a.rtc_action == "nack" else {"on": a.state == "on"} if a.rtc_action == "battery" else {}
        print(json.dumps(client.call(state, "rtc", board="controller", action=a.rtc_action, **kw)))
