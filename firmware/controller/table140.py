# Backup information table 140 (Fig. 5): one per backup device address, held by
# the channel interface while it drives a backup. Cleared at 710 and 801.


class Table140:
    def __init__(self, addr):
        self.addr = addr
        self.clear()

    def clear(self):
        self.disk = 0          # 151 disk flag  } 141 device type flag
        self.mt = 0            # 152 MT flag    }
        self.checked = 0       # 142 volume-name check flag
        self.current = ""      # 143 current volume name
        self.mount_wait = 0    # 144 MT mount-wait flag

    def as_dict(self):
        return {"address": self.addr, "141": {"151_disk": self.disk, "152_mt": self.mt},
                "142_checked": self.checked, "143_current": self.current, "144_mount_wait": self.mount_wait}


def next_volume_name(name):
    # Step 703: "SSC001" + 1 = "SSC002". The trailing digits count up with carry
    # and keep their width; running out of digits is an error, not a wrap.
    i = len(name)
    while i and "0" <= name[i - 1] <= "9":
        i -= 1
    digits = name[i:]
    if not digits:
        raise ValueError("volume name %s has no digits to count up" % name)
    n = int(digits) + 1
    s = "%0*d" % (len(digits), n)
    if len(s) > len(digits):
        raise ValueError("no volume name after %s" % name)
    return name[:i] + s
