"""backupctl ports / bootloader: find attached Picos; send one to its USB bootloader."""
from host_tools import ports, uf2


def register(sub):
    p = sub.add_parser("ports", help="list attached USB serial ports, MicroPython Picos first",
                       description="Lists USB serial ports with their USB id and serial number. Any "
                                   "--port option takes the device, the serial number or its unique end.")
    p.set_defaults(func=run_ports)
    b = sub.add_parser("bootloader", help="restart a Pico into its BOOTSEL drive (RPI-RP2)",
                       description="Runs machine.bootloader() on the MicroPython board at PORT; it then "
                                   "shows up as the RPI-RP2 drive for backupctl flash --micropython FILE.uf2.")
    b.add_argument("port", nargs="?", metavar="PORT", help="device path, USB serial number or pyserial URL")
    b.add_argument("--port", dest="port_opt", metavar="PORT", help="the same, as an option")
    b.set_defaults(func=run_bootloader)


def run_ports(a):
    print(ports.format_boards(ports.list_boards()))
    return 0


def run_bootloader(a):
    spec = a.port_opt or a.port
    if not spec:
        raise SystemExit("backupctl bootloader: give the board's PORT (`backupctl ports` lists them)")
    port = ports.resolve_port(spec)
    uf2.enter_bootloader(port)
    print("%s restarts as the RPI-RP2 drive; next: backupctl flash --micropython RPI_PICO-<version>.uf2" % port)
    return 0
