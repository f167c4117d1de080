"""backupctl: one command line for the self-backing storage controller.

Virtual boards (`sim`), the serial console, flashing, configuration tables,
volumes and backups. Every command that talks to a board takes --port with a
device path, a USB serial number or a pyserial URL (rfc2217://host:port); with
no --port it uses the virtual board of that role started by `backupctl sim up`.
"""
import argparse
import importlib
import sys

# Each module adds its subcommands with register(subparsers).
COMMAND_MODULES = (
    "host_tools.cmd_sim",
    "host_tools.cmd_console",
    "host_tools.cmd_flash",
    "host_tools.cmd_ports",
    "host_tools.cmd_demo",
    "host_tools.cmd_bench",
    "host_tools.cmd_vol",
    "host_tools.cmd_config",
    "host_tools.cmd_soak",
)


def build_parser():
    ap = argparse.ArgumentParser(prog="backupctl", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return ap


def main(argv=None):
    ap = build_parser()
    args = ap.parse_args(argv)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # every failure is one line that says what to do
        from host_tools.errors import explain
        print("backupctl: error: " + explain(e), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
