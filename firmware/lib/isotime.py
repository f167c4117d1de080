# ISO 8601 text <-> DS3231 datetime tuples (year, month, day, hour, minute, second, weekday 0=Mon).
_MDAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def days_in_month(y, m):
    return 29 if m == 2 and y % 4 == 0 and (y % 100 != 0 or y % 400 == 0) else _MDAYS[m - 1]


def weekday(y, m, d):
    # Sakamoto's method, shifted so that Monday = 0 like time.localtime()
    t = (0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4)
    if m < 3:
        y -= 1
    return (y + y // 4 - y // 100 + y // 400 + t[m - 1] + d + 6) % 7


def parse(s):
    # "2026-11-26T12:30:00", "2026-11-26 12:30:00" or "2026-11-26T12:30"
    s = s.strip().replace(" ", "T")
    try:
        date, _, tod = s.partition("T")
        y, m, d = (int(x) for x in date.split("-"))
        parts = [int(x) for x in tod.split(":")] if tod else [0, 0, 0]
        while len(parts) < 3:
            parts.append(0)
        hh, mm, ss = parts
    except ValueError:
        raise ValueError("not an ISO time, expected YYYY-MM-DDTHH:MM:SS")
    if not 2000 <= y <= 2099:
        raise ValueError("year %d out of range (the DS3231 counts 2000-2099)" % y)
    if not 1 <= m <= 12:
        raise ValueError("impossible date: no month %d" % m)
    if not 1 <= d <= days_in_month(y, m):
        raise ValueError("impossible date: %04d-%02d has %d days" % (y, m, days_in_month(y, m)))
    if not (0 <= hh < 24 and 0 <= mm < 60 and 0 <= ss < 60):
        raise ValueError("time of day out of range")
    return (y, m, d, hh, mm, ss, weekday(y, m, d))


def fmt(t):
    return "%04d-%02d-%02dT%02d:%02d:%02d" % t[:6]
