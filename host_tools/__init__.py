"""Host tools for the RP2040 self-backing storage controller (backupctl)."""
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRMWARE = os.path.join(ROOT, "firmware")
BOARD_CONFIGS = os.path.join(ROOT, "board_configs")


def firmware_lib(name):
    """A module of firmware/lib that is plain Python (table_rules, ansilabel),
    loaded by path so that the host runs the very file the boards run."""
    import importlib.util
    import sys
    lib = os.path.join(FIRMWARE, "lib")
    if lib not in sys.path:  # for its own imports (table_rules imports tablebase), after the host's modules
        sys.path.append(lib)
    spec = importlib.util.spec_from_file_location(name, os.path.join(FIRMWARE, "lib", name + ".py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
