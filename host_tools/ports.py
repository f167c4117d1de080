"""Find attached boards and turn what a user types into a port pyserial opens.

A port spec is a device path (/dev/ttyACM0, /dev/pico-controller, COM3), a USB
serial number (exact, or a unique suffix: a Pico's serial is its flash unique
id, the same hex string `hal.uid()` reports), or a pyserial URL
(rfc2217://host:port, socket://host:port) for a board on another machine.
"""
import os
import re
from dataclasses import dataclass

from serial.tools import list_ports

MICROPYTHON_PICO = (0x2E8A, 0x0005)

# Other USB serial devices often found next to a Pico, and what to do about them.
_HINTS = {
    (0x2E8A, 0x000A): "Pico running a C SDK program, not MicroPython: install MicroPython"
    " (hold BOOTSEL while plugging in, then backupctl flash --micropython FILE.uf2)",
    (0x2E8A, 0x000C): "Raspberry Pi Debug Probe: its UART talks to a board's GP0/GP1, not to MicroPython's REPL",
    (0x239A, None): "Adafruit VID, likely CircuitPython: install MicroPython instead",
}


class PortError(Exception):
    """A port spec that names no attached board, or more than one."""


@dataclass(frozen=True)
class Port:
    device: str
    serial_number: str | None
    vid: int | None
    pid: int | None
    description: str

    @property
    def micropython(self):
        return (self.vid, self.pid) == MICROPYTHON_PICO

    @property
    def hint(self):
        if self.micropython:
            return ""
        return _HINTS.get((self.vid, self.pid)) or _HINTS.get((self.vid, None)) or "not a MicroPython Pico (2e8a:0005)"

    @property
    def usb_id(self):
        return "%04x:%04x" % (self.vid, self.pid) if self.vid is not None else "-"


def list_boards():
    """Attached USB serial ports, MicroPython Picos first."""
    ports = [
        Port(p.device, p.serial_number, p.vid, p.pid, p.description or "")
        for p in list_ports.comports()
        if p.vid is not None
    ]
    return sorted(ports, key=lambda p: (not p.micropython, p.device))


def format_boards(ports):
    """The table `backupctl ports` prints."""
    if not ports:
        return "no USB serial ports found (is the Pico plugged in with a data cable?)"
    lines = ["%-22s %-9s %-18s %s" % ("PORT", "USB ID", "SERIAL", "WHAT")]
    for p in ports:
        what = "MicroPython Pico" if p.micropython else p.description + " - " + p.hint
        lines.append("%-22s %-9s %-18s %s" % (p.device, p.usb_id, p.serial_number or "-", what))
    return "\n".join(lines)


def _is_url(spec):
    return re.match(r"^[a-z][a-z0-9+.-]*://", spec) is not None


def _is_windows_port(spec):
    return re.match(r"^COM\d+$", spec, re.I) is not None


def resolve_port(spec):
    """The device path or URL for serial.serial_for_url; PortError when spec matches no
    attached board or several."""
    if _is_url(spec) or _is_windows_port(spec):
        return spec
    if "/" in spec or os.sep in spec:
        if os.path.exists(spec):
            return spec
        raise PortError("no such port %s\n%s" % (spec, format_boards(list_boards())))
    ports = list_boards()
    exact = [p for p in ports if spec in (p.serial_number, os.path.basename(p.device))]
    if exact:
        return exact[0].device
    # Serials are hex; hal.uid() prints them in lower case, USB in upper case.
    matches = [p for p in ports if p.serial_number and p.serial_number.upper().endswith(spec.upper())]
    if len(matches) == 1:
        return matches[0].device
    if matches:
        raise PortError(
            "serial %r is ambiguous: it matches the end of %s; give more digits\n%s"
            % (spec, ", ".join(p.serial_number for p in matches), format_boards(matches))
        )
    raise PortError(
        "no attached board has serial number %r (nor one ending so)\n%s" % (spec, format_boards(ports))
    )
