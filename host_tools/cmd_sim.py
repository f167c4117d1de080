"""backupctl sim up|down|status|power|faults|rtc|sd: the virtual board pair."""
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
    sd = s.add_parser(
        "sd", help="SD card faults of a virtual board (the card model speaks SPI to the firmware's driver)",
        description="Faults of a virtual board's SD card; they stay until cleared, across resets and power cuts. "
                    "eject: card pulled (no answer on the bus); insert: put back (it starts from power-on); "
                    "full: the file system has no free cluster left (writes fail with ENOSPC); errors: reads fail with an error "
                    "token, writes with the write-error token, each with the given chance (in the given blocks); "
                    "busy: each write keeps the card busy MS ms (over 500 the driver times out); "
                    "cut: power cut when the Nth block of multi-block writes has arrived, leaving that "
                    "sector old or torn (first half new); clear: no faults, card in.")
    sd.add_argument("board", choices=("controller", "backupdev"))
    sd.add_argument("fault", choices=("eject", "insert", "full", "errors", "busy", "cut", "clear"))
    sd.add_argument("--read-rate", type=float, help="errors: chance that a block read fails")
    sd.add_argument("--write-rate", type=float, help="errors: chance that a block write is refused")
    sd.add_argument("--blocks", metavar="A-B", help="errors: only sectors A to B (inclusive)")
    sd.add_argument("--ms", type=int, default=300, help="busy: milliseconds each write stays busy (default 300)")
    sd.add_argument("--after", type=int, default=1, metavar="N", help="cut: at the Nth multi-block write block (default 1)")
    sd.add_argument("--torn", choices=("old", "half"), default="old", help="cut: what the sector in flight keeps (default old)")
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
    elif a.action == "sd":
        print(json.dumps(client.call(state, "sd", **_sd_request(a))))


def _sd_request(a):
    req = {"board": a.board, "action": a.fault}
    if a.fault == "errors":
        if a.read_rate is None and a.write_rate is None:
            raise SystemExit("sim sd errors: give --read-rate and/or --write-rate")
        req.update(read_rate=a.read_rate, write_rate=a.write_rate)
        if a.blocks:
            try:
                lo, hi = (int(x) for x in a.blocks.split("-"))
            except ValueError:
                raise SystemExit("--blocks must be A-B, two sector numbers") from None
            req["blocks"] = [lo, hi]
    elif a.fault == "busy":
        req["ms"] = a.ms
    elif a.fault == "cut":
        req.update(after=a.after, torn=a.torn)
    return req
