#!/usr/bin/env python3
"""A FUSE file system that remembers only what was fsynced, for power-loss tests.

    python3 tests/powercut_fs.py MOUNTPOINT CUTS_DIR

Everything lives in memory. Each file and directory has a volatile state (what readers
see) and a durable state (what a machine crash would leave), following the POSIX minimum:

- write and truncate change a file's volatile bytes; fsync/fdatasync of the file makes
  them durable;
- create, mkdir, rename and unlink change a directory's volatile entries; fsync of the
  directory makes its entries durable (a new file survives only if both its data and the
  directory that names it were synced).

`mkdir MOUNTPOINT/.cut-NAME` is the power cut: the durable tree as of that instant is
written to CUTS_DIR/NAME (a real directory), and the file system goes on. Operations run
one at a time (single-threaded), so a cut is atomic with respect to them.

Requires the `mfusepy` package (libfuse 3 or 2); run as root or with fusermount.
"""
import errno
import os
import stat
import sys
import time
import warnings

import mfusepy as fuse


class Node:
    __slots__ = ("is_dir", "mode", "data", "durable_data", "entries", "durable_entries", "mtime")

    def __init__(self, is_dir, mode):
        self.is_dir = is_dir
        self.mode = mode
        self.data = bytearray()
        self.durable_data = b""
        self.entries = {}
        self.durable_entries = {}
        self.mtime = time.time()


class PowerCutFS(fuse.Operations):
    use_ns = False

    def __init__(self, cuts_dir):
        self.cuts_dir = cuts_dir
        self.root = Node(True, 0o755)
        self.handles = {}
        self.next_fh = 1

    # -- helpers
    def _lookup(self, path):
        node = self.root
        for part in [p for p in path.split("/") if p]:
            if not node.is_dir or part not in node.entries:
                raise fuse.FuseOSError(errno.ENOENT)
            node = node.entries[part]
        return node

    def _parent(self, path):
        head, name = os.path.split(path.rstrip("/"))
        parent = self._lookup(head or "/")
        if not parent.is_dir:
            raise fuse.FuseOSError(errno.ENOTDIR)
        return parent, name

    def _handle(self, node):
        fh = self.next_fh
        self.next_fh += 1
        self.handles[fh] = node
        return fh

    def _node(self, path, fh):
        if fh and fh in self.handles:
            return self.handles[fh]
        return self._lookup(path)

    def _cut(self, name):
        out = os.path.join(self.cuts_dir, name)

        def dump(node, at):
            os.makedirs(at, exist_ok=True)
            for n, child in node.durable_entries.items():
                p = os.path.join(at, n)
                if child.is_dir:
                    dump(child, p)
                else:
                    with open(p, "wb") as f:
                        f.write(child.durable_data)
                    os.utime(p, (child.mtime, child.mtime))

        dump(self.root, out)

    # -- metadata
    def getattr(self, path, fh=None):
        node = self._node(path, fh)
        now = node.mtime
        if node.is_dir:
            return dict(st_mode=stat.S_IFDIR | node.mode, st_nlink=2 + len(node.entries),
                        st_size=4096, st_mtime=now, st_atime=now, st_ctime=now,
                        st_uid=os.getuid(), st_gid=os.getgid())
        return dict(st_mode=stat.S_IFREG | node.mode, st_nlink=1, st_size=len(node.data),
                    st_mtime=now, st_atime=now, st_ctime=now, st_blocks=(len(node.data) + 511) // 512,
                    st_uid=os.getuid(), st_gid=os.getgid())

    def access(self, path, amode):
        self._lookup(path)
        return 0

    def chmod(self, path, mode):
        self._lookup(path).mode = mode & 0o7777
        return 0

    def chown(self, path, uid, gid):
        return 0

    def utimens(self, path, times=None):
        node = self._lookup(path)
        node.mtime = times[1] if times else time.time()
        return 0

    def statfs(self, path):
        return dict(f_bsize=4096, f_frsize=4096, f_blocks=1 << 20, f_bfree=1 << 19,
                    f_bavail=1 << 19, f_files=1 << 16, f_ffree=1 << 15, f_namemax=255)

    # -- directories
    def opendir(self, path):
        return self._handle(self._lookup(path))

    def releasedir(self, path, fh):
        self.handles.pop(fh, None)
        return 0

    def readdir(self, path, fh):
        node = self._node(path, fh)
        return [".", ".."] + list(node.entries)

    def mkdir(self, path, mode):
        parent, name = self._parent(path)
        if parent is self.root and name.startswith(".cut-"):
            # The marker stays visible (the kernel looks it up after mkdir), never durable.
            self._cut(name[len(".cut-"):])
        if name in parent.entries:
            raise fuse.FuseOSError(errno.EEXIST)
        parent.entries[name] = Node(True, mode & 0o7777)
        parent.mtime = time.time()
        return 0

    def rmdir(self, path):
        parent, name = self._parent(path)
        node = parent.entries.get(name)
        if node is None:
            raise fuse.FuseOSError(errno.ENOENT)
        if not node.is_dir:
            raise fuse.FuseOSError(errno.ENOTDIR)
        if node.entries:
            raise fuse.FuseOSError(errno.ENOTEMPTY)
        del parent.entries[name]
        return 0

    def fsyncdir(self, path, datasync, fh):
        node = self._node(path, fh)
        node.durable_entries = dict(node.entries)
        return 0

    # -- files
    def create(self, path, mode, fi=None):
        parent, name = self._parent(path)
        node = parent.entries.get(name)
        if node is None:
            node = Node(False, mode & 0o7777)
            parent.entries[name] = node
            parent.mtime = time.time()
        return self._handle(node)

    def open(self, path, flags):
        return self._handle(self._lookup(path))

    def release(self, path, fh):
        self.handles.pop(fh, None)
        return 0

    def flush(self, path, fh):
        return 0

    def read(self, path, size, offset, fh):
        node = self._node(path, fh)
        return bytes(node.data[offset:offset + size])

    def write(self, path, data, offset, fh):
        node = self._node(path, fh)
        if offset > len(node.data):
            node.data.extend(b"\0" * (offset - len(node.data)))
        node.data[offset:offset + len(data)] = data
        node.mtime = time.time()
        return len(data)

    def truncate(self, path, length, fh=None):
        node = self._node(path, fh)
        if length < len(node.data):
            del node.data[length:]
        else:
            node.data.extend(b"\0" * (length - len(node.data)))
        node.mtime = time.time()
        return 0

    def fsync(self, path, datasync, fh):
        node = self._node(path, fh)
        if node.is_dir:
            node.durable_entries = dict(node.entries)
        else:
            node.durable_data = bytes(node.data)
        return 0

    def unlink(self, path):
        parent, name = self._parent(path)
        if name not in parent.entries:
            raise fuse.FuseOSError(errno.ENOENT)
        del parent.entries[name]
        parent.mtime = time.time()
        return 0

    def rename(self, old, new):
        op, on = self._parent(old)
        np_, nn = self._parent(new)
        node = op.entries.get(on)
        if node is None:
            raise fuse.FuseOSError(errno.ENOENT)
        target = np_.entries.get(nn)
        if target is not None and target.is_dir and target.entries:
            raise fuse.FuseOSError(errno.ENOTEMPTY)
        del op.entries[on]
        np_.entries[nn] = node
        op.mtime = np_.mtime = time.time()
        return 0


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    mnt, cuts = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    os.makedirs(cuts, exist_ok=True)
    warnings.simplefilter("ignore", DeprecationWarning)
    fuse.FUSE(PowerCutFS(cuts), mnt, foreground=True, nothreads=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
