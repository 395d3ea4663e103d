"""Reading files a configuration names, with a bound: /dev/zero or a mistyped path to a disk
image must end in a one-line error, not in the process reading until memory runs out."""
from __future__ import annotations

import errno

MiB = 1024 * 1024


def read_bounded(path: str, limit: int) -> bytes:
    """The whole file, or OSError(EFBIG) when it holds more than ``limit`` bytes."""
    with open(path, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit} bytes, so not the file it should be")
    return data
