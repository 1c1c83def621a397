"""Sizes for people, in one convention: decimal units (1 GB = 1,000,000,000 bytes), as AWS states its quotas.

Used by the pages (the `bytes` template filter), the CLI and the messages about files, so that the
10 GB job quota reads "10 GB" everywhere instead of "9.3 GB" (binary) on some pages. No Django here.
"""

from __future__ import annotations

UNITS = (("TB", 1000**4), ("GB", 1000**3), ("MB", 1000**2), ("kB", 1000))


def bytes_format(n: int | None) -> str:
    """A byte count in decimal units, three significant figures at most.

    >>> bytes_format(10 * 1000**3)
    '10 GB'
    >>> bytes_format(1_048_576)
    '1.05 MB'
    >>> bytes_format(999)
    '999 bytes'
    >>> bytes_format(1)
    '1 byte'
    """
    n = n or 0
    for i, (unit, scale) in enumerate(UNITS):
        if n >= scale:
            value = float(f"{n / scale:.3g}")
            if (
                value >= 1000 and i > 0
            ):  # 999,999 bytes rounds up to 1 MB, not "1000 kB"
                unit, scale = UNITS[i - 1]
                value = float(f"{n / scale:.3g}")
            return f"{value:,.0f} {unit}" if value >= 100 else f"{value:g} {unit}"
    return f"{n:,} byte{'' if n == 1 else 's'}"
