"""Type-check the firmware that touches the RP2040 hardware against the published
MicroPython rp2 stubs (PyPI micropython-rp2-rpi_pico-stubs), with mypy.

The stubs replace CPython's standard library (MicroPython's `time`, `select`,
`asyncio` differ), so they are laid out as a custom typeshed in a temporary
folder: the stdlib stubs plus the board's modules, registered in VERSIONS.
Firmware modules import each other by their board paths (`import hal`,
`import link` from /lib), hence mypy_path = firmware:firmware/lib. Every file
that can run on a Pico is checked (pico_files(): all of firmware/ but the
virtual board's HAL); hardware_files() are those that touch the hardware.
Codes that only say mypy could not infer a type on its own (var-annotated,
has-type) are off: MicroPython code carries no annotations.
"""
import ast
import os
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata

from host_tools import FIRMWARE

BOARD_STUBS = "micropython-rp2-rpi_pico-stubs"
STDLIB_STUBS = "micropython-stdlib-stubs"
HARDWARE_MODULES = ("machine", "rp2")
# Modules only a virtual board has (the boot ROM's hardware, the host's tty).
VIRTUAL_MODULES = ("vboard_hw", "termios")


def _py_files(root):
    for d, _, names in os.walk(root):
        for name in names:
            if name.endswith(".py"):
                yield os.path.join(d, name)


def hardware_files(root=FIRMWARE):
    """Firmware .py files that import machine or rp2, sorted."""
    return sorted(p for p in _py_files(root) if _imports(p, HARDWARE_MODULES))


def pico_files(root=FIRMWARE):
    """Firmware .py files that can run on a Pico (not the virtual board's), sorted."""
    return sorted(p for p in _py_files(root) if not _imports(p, VIRTUAL_MODULES))


def _imports(path, modules):
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        if any(n.split(".")[0] in modules for n in names):
            return True
    return False


def _installed(dist_name):
    """(distribution, the folder its files are relative to)."""
    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError:
        raise RuntimeError(f"{dist_name} is not installed: pip install -e '.[dev]'") from None
    return dist, str(dist.locate_file(""))


def build_typeshed(dest):
    """Lay out stdlib + rp2 board stubs as a typeshed under dest; return its path."""
    typeshed = os.path.join(dest, "typeshed")
    stdlib = os.path.join(typeshed, "stdlib")
    for name in (STDLIB_STUBS, BOARD_STUBS):
        dist, site = _installed(name)
        for f in dist.files or ():
            top = f.parts[0]
            if top.endswith(".dist-info") or "__pycache__" in f.parts:
                continue
            # The stdlib package ships stdlib/ and stubs/ already in typeshed shape;
            # everything else (machine.pyi, rp2/, _mpy_shed/) joins stdlib/.
            rel = str(f) if top in ("stdlib", "stubs") else os.path.join("stdlib", str(f))
            target = os.path.join(typeshed, rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copyfile(os.path.join(site, str(f)), target)
    versions_path = os.path.join(stdlib, "VERSIONS")
    with open(versions_path, encoding="utf-8") as f:
        listed = {line.split(":")[0].strip() for line in f if ":" in line and not line.startswith("#")}
    # mypy ignores typeshed modules that VERSIONS does not list.
    extra = sorted({os.path.splitext(n)[0] for n in os.listdir(stdlib)} - listed - {"VERSIONS"})
    with open(versions_path, "a", encoding="utf-8") as f:
        f.writelines(f"{m}: 3.0-\n" for m in extra)
    return typeshed


def run_mypy(files, workdir):
    """mypy on files with the rp2 stubs; returns (exit code, output). Caches in workdir."""
    typeshed = build_typeshed(workdir)
    config = os.path.join(workdir, "mypy.ini")
    with open(config, "w", encoding="utf-8") as f:
        f.write(
            "[mypy]\n"
            f"custom_typeshed_dir = {typeshed}\n"
            f"mypy_path = {FIRMWARE}{os.pathsep}{os.path.join(FIRMWARE, 'lib')}\n"
            "python_version = 3.11\n"
            "no_site_packages = True\n"
            "follow_imports = silent\n"
            "check_untyped_defs = True\n"
            "show_error_codes = True\n"
            "disable_error_code = var-annotated, has-type\n"
            "warn_unused_ignores = True\n"
            "show_column_numbers = True\n"
            "explicit_package_bases = True\n"
            f"cache_dir = {os.path.join(workdir, 'cache')}\n"
        )
    # Run from the firmware root so module names are the board's (hal.rp2, not firmware.hal.rp2).
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", config, *files],
        cwd=FIRMWARE,
        capture_output=True,
        text=True,
    )
    return proc.returncode, proc.stdout + proc.stderr


def check(files=None):
    """Check the firmware a Pico runs; returns (ok, output)."""
    files = pico_files() if files is None else files
    with tempfile.TemporaryDirectory(prefix="typecheck-") as tmp:
        code, out = run_mypy(files, tmp)
    return code == 0, out


def main(argv=None):
    ok, out = check(argv or None)
    sys.stdout.write(out)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
