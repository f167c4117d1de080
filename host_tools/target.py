"""Which serial port a command talks to: --port, or the virtual board of a role."""
import os

from host_tools.sim import client


def add_port_args(p, role_default="controller"):
    p.add_argument("--port", help="serial port, USB serial number or pyserial URL of a real board "
                                  "(default: the virtual board started by `backupctl sim up`)")
    p.add_argument("--sim", default=None, metavar="DIR",
                   help="state folder of the virtual boards (default: $BACKUPCTL_SIM or .sim)")
    p.set_defaults(role=role_default)


def resolve_port_spec(spec):
    """Device path, USB serial number or pyserial URL -> what pyserial opens."""
    from host_tools.ports import resolve_port
    return resolve_port(spec)


def resolve(args, role=None):
    """Port string for pyserial."""
    if getattr(args, "port", None):
        return resolve_port_spec(args.port)
    state = args.sim or client.default_state_dir()
    st = client.call(state, "status")
    return os.path.realpath(st["boards"][role or args.role]["console"])
