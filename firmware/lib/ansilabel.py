# ANSI X3.27 tape labels: 80-byte VOL1, HDR1/HDR2, EOF1/EOF2, EOV1/EOV2 and
# user labels (UHLn/UTLn). Fields are upper-case text padded with spaces.
LABEL_LEN = 80
IMPL = "RP2040BACKUP"  # implementation identifier (13 characters)


def _f(v, n, num=False):
    s = ("%0*d" % (n, v)) if num else str(v)
    if len(s) > n:
        raise ValueError("label field %r longer than %d" % (s, n))
    return s + " " * (n - len(s))


def julian(t):
    # creation date " yyddd" from a datetime tuple (year, month, day, ...)
    y, m, d = t[0], t[1], t[2]
    mdays = (31, 29 if y % 4 == 0 else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
    return " %02d%03d" % (y % 100, sum(mdays[:m - 1]) + d)


def vol1(volser, owner=""):
    return ("VOL1" + _f(volser, 6) + " " + " " * 13 + _f(IMPL, 13) + _f(owner, 14) + " " * 28 + "4").encode()


def hdr1(kind, file_id, set_id, section, created, blocks=0):
    # kind: "HDR", "EOF" or "EOV"; blocks = data blocks of this section (EOF/EOV)
    s = (kind + "1" + _f(file_id, 17) + _f(set_id, 6) + _f(section, 4, True) + _f(1, 4, True)
         + _f(1, 4, True) + "00" + created + " 00000" + " " + _f(blocks % 1000000, 6, True)
         + _f(IMPL, 13) + " " * 7)
    return s.encode()


def hdr2(kind, block_len):
    return (kind + "2" + "U" + _f(block_len, 5, True) + _f(block_len, 5, True) + " " * 35 + "00"
            + " " * 28).encode()


def user(kind, n, text):
    # UHLn / UTLn: 76 characters of our own, here "KEY=VALUE KEY=VALUE"
    return (kind + str(n) + _f(text, 76)).encode()


def parse(block):
    """-> (label id such as "HDR1", dict of fields) or (None, None) for a non-label block."""
    if len(block) != LABEL_LEN:
        return None, None
    try:
        s = bytes(block).decode()
    except UnicodeError:
        return None, None
    lid = s[:4]
    if lid == "VOL1":
        return lid, {"volser": s[4:10].strip()}
    if lid in ("HDR1", "EOF1", "EOV1"):
        return lid, {"file_id": s[4:21].strip(), "set_id": s[21:27].strip(), "section": int(s[27:31]),
                     "blocks": int(s[54:60])}
    if lid in ("HDR2", "EOF2", "EOV2"):
        return lid, {"block_len": int(s[5:10])}
    if lid[:3] in ("UHL", "UTL"):
        return lid, dict(kv.split("=", 1) for kv in s[4:].split() if "=" in kv)
    return None, None
