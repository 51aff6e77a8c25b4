"""Run ids (wids): UUID version 4 strings, made without a system call per request.

``uuid.uuid4()`` reads the kernel's random source on every call, which showed up as several
percent of a worker's time on small flows. A wid needs to be unique, not secret, so it comes
from a Mersenne Twister seeded from the OS, reseeded in every forked worker.
"""

from __future__ import annotations

__all__ = ["new_wid"]

import os
import random

_random = random.Random()
os.register_at_fork(after_in_child=_random.seed)

_VERSION_CLEAR = ~((0xF << 76) | (0x3 << 62))
_VERSION_SET = (0x4 << 76) | (0x2 << 62)


def new_wid() -> str:
    n = (_random.getrandbits(128) & _VERSION_CLEAR) | _VERSION_SET
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
