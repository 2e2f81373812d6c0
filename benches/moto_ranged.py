#!/usr/bin/env python3
"""`moto_server`, except that a ranged GET reads only its range of the object.

    python3 benches/moto_ranged.py -H 127.0.0.1 -p PORT

moto 5.x answers `GET` with `Range: bytes=A-B` by reading the whole object into memory and
slicing it (`S3Response.get_object` returns `key.value`, then `_handle_range_header`
slices), so each 8 MiB range of a 1.3 GB snapshot costs moto a 1.3 GB read: a cost no real
store charges, and one that makes moto, not the network, the bottleneck of a parallel
ranged download (measured: 103 s of moto CPU for one 2 GB restore). Here, for a GET with
one `bytes=A-B` range on an object whose body moto keeps in a file, the body handed to
moto's range code is a stand-in that reports the object's length and reads only the slice
asked for (moto's response enrichment, a regex over XML bodies, skips it as it skips any
non-text body). Everything else is moto's own code path, headers and checks included
(`If-Match` too). Used by compare.py scenario 7.
"""
import re
import sys
import threading

from moto.s3 import models, responses
from moto.server import main

LOCAL = threading.local()
RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


class Slice:
    """What `_handle_range_header` needs of a body: its length, and slices of it."""

    def __init__(self, key):
        self.key = key

    def __len__(self):
        return self.key.contentsize

    def __bool__(self):
        return self.key.contentsize > 0

    def __getitem__(self, s):
        start, stop, _ = s.indices(len(self))
        with self.key.lock:
            self.key._value_buffer.seek(start)
            return self.key._value_buffer.read(max(0, stop - start))


value = models.FakeKey.value


def lazy_value(self):
    if getattr(LOCAL, "ranged", False):
        return Slice(self)
    return value.fget(self)


models.FakeKey.value = property(lazy_value, value.fset)

get_object = responses.S3Response.get_object


def ranged_get_object(self):
    LOCAL.ranged = bool(RANGE.match(self.headers.get("range", "") or ""))
    try:
        return get_object(self)
    finally:
        LOCAL.ranged = False


responses.S3Response.get_object = ranged_get_object

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
