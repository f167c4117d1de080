"""Host tools for the RP2040 self-backing storage controller (backupctl)."""
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRMWARE = os.path.join(ROOT, "firmware")
BOARD_CONFIGS = os.path.join(ROOT, "board_configs")
