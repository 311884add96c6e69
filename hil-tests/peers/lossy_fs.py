#!/usr/bin/env python3
"""A FUSE filesystem that loses what was never fsynced: a power-cut simulator.

    lossy_fs.py BACKING MOUNTPOINT [--keep-fraction F] [--seed N]

Mounts the directory BACKING at MOUNTPOINT (fusepy on libfuse 2; run as
root, which mounts with mount(2) and needs no fusermount). Once mounted,
prints READY on stdout. Logs go to stderr.

What is durable when (the model: a disk write cache with power loss)

  * File data: write() and truncate() (ftruncate, O_TRUNC) go into an
    in-memory overlay per inode, in 4 KiB pages, plus the file's logical
    size. The backing file is not touched. Every process sees the overlay
    (read, stat size, shared mmap), as it would see the page cache. Closing
    the file flushes nothing.
  * fsync() and fdatasync() on a file write that inode's overlay (pages and
    size) to the backing file and fsync it there: after they return, the
    data survives a power cut.
  * Metadata (create, mkdir, unlink, rmdir, rename, link, symlink, chmod,
    chown, utimens) is applied to BACKING at once, and so is always
    durable; fsync on a directory has nothing left to do. A created file is
    durable with size 0 until its data is fsynced; a rename of an unsynced
    file keeps its name and loses its data.

Power cut: SIGUSR1. Under the fs lock (after the request in flight, if
any, finishes), every overlay is dropped, except that with --keep-fraction F
each dirty page independently reaches the backing file with probability F
(a torn, partial write-back: unsynced truncations are never kept, and a
kept page past the durable end of a file extends it). Then
the mount is detached (umount -l) and the process exits at once, so nothing
more can reach BACKING. Kill the processes writing through the mount first
(SIGKILL): FUSE without writeback caching delivers each write to this
process inside the write() call, so a killed writer has nothing left in
flight, and the cut then loses exactly what was not fsynced. Processes
still using the mount get ENOTCONN. Mount a fresh lossy_fs.py on BACKING
(or read BACKING directly) to see what survived.

Clean stop: SIGTERM, SIGINT or SIGHUP write every overlay back (like sync
at umount), detach the mount and exit 0; so does an umount from outside.
Failed operations other than ENOENT are logged to stderr.

Known gaps: metadata is never lost (a real disk can lose a create or
rename not followed by an fsync of the directory); torn writes are page
granular, not sector granular; xattrs and POSIX locks are not passed
through (the kernel keeps locks itself, which is right on one host).
SQLite's -shm is mapped shared and works (no direct_io); its content is
not durable and need not be.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import os
import random
import signal
import stat
import sys
import threading

from fuse import FUSE, FuseOSError, Operations

PAGE = 4096
MNT_DETACH = 2


def log(msg: str) -> None:
    print(f"lossy_fs: {msg}", file=sys.stderr, flush=True)


class Node:
    """One backing inode: an fd on it and its unsynced data.

    Bytes of the backing file at or past `floor` are hidden (a truncation not
    yet synced); `pages` hold whole dirty pages as the processes see them;
    `size` is the logical size."""

    def __init__(self, fd: int, key: tuple[int, int]):
        self.fd = fd
        self.key = key
        self.size = os.fstat(fd).st_size
        self.floor = self.size
        self.pages: dict[int, bytearray] = {}
        self.dirty = False
        self.opens = 0
        self.linked = True

    def _base(self, off: int, n: int) -> bytes:
        """The durable bytes [off, off+n) as this node sees them (zero filled)."""
        valid = max(0, min(n, self.floor - off))
        data = os.pread(self.fd, valid, off) if valid else b""
        return data + bytes(n - len(data))

    def read(self, off: int, n: int) -> bytes:
        n = max(0, min(n, self.size - off))
        if n == 0:
            return b""
        first, last = off // PAGE, (off + n - 1) // PAGE
        if not any(p in self.pages for p in range(first, last + 1)):
            return self._base(off, n)
        out = bytearray()
        for p in range(first, last + 1):
            start = max(off, p * PAGE)
            end = min(off + n, (p + 1) * PAGE)
            page = self.pages.get(p)
            if page is None:
                out += self._base(start, end - start)
            else:
                out += page[start - p * PAGE : end - p * PAGE]
        return bytes(out)

    def write(self, off: int, data: bytes) -> None:
        pos = 0
        while pos < len(data):
            p, in_page = divmod(off + pos, PAGE)
            take = min(PAGE - in_page, len(data) - pos)
            page = self.pages.get(p)
            if page is None:
                if take == PAGE:
                    page = bytearray(PAGE)
                else:
                    page = bytearray(self.read(p * PAGE, PAGE).ljust(PAGE, b"\0"))
                self.pages[p] = page
            page[in_page : in_page + take] = data[pos : pos + take]
            pos += take
        self.size = max(self.size, off + len(data))
        self.dirty = True

    def truncate(self, length: int) -> None:
        if length < self.size:
            keep = -(-length // PAGE)
            for p in [p for p in self.pages if p >= keep]:
                del self.pages[p]
            tail = self.pages.get(length // PAGE)
            if tail is not None:
                cut = length % PAGE
                tail[cut:] = bytes(PAGE - cut)
            self.floor = min(self.floor, length)
        self.size = length
        self.dirty = True

    def flush(self) -> None:
        """Writes the overlay to the backing file and fsyncs it."""
        if self.dirty:
            if self.floor < os.fstat(self.fd).st_size:
                os.ftruncate(self.fd, self.floor)
            for p in sorted(self.pages):
                end = min(PAGE, self.size - p * PAGE)
                if end > 0:
                    os.pwrite(self.fd, self.pages[p][:end], p * PAGE)
            os.ftruncate(self.fd, self.size)
            self.pages.clear()
            self.floor = self.size
            self.dirty = False
        os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)
        self.fd = -1


class LossyFs(Operations):
    use_ns = True

    def __init__(self, root: str, ready: threading.Event):
        self.root = os.path.realpath(root)
        self.ready = ready
        self.mutex = threading.Lock()
        self.nodes: dict[tuple[int, int], Node] = {}
        self.handles: dict[int, Node] = {}
        self.next_fh = 1
        self.dead = False

    def __call__(self, op, *args):
        with self.mutex:
            if self.dead:
                raise FuseOSError(errno.EIO)
            try:
                return getattr(self, op)(*args)
            except FuseOSError:
                raise
            except OSError as e:
                if e.errno != errno.ENOENT:
                    log(f"{op}{args[:1]}: {e}")
                raise FuseOSError(e.errno or errno.EIO) from e
            except Exception as e:
                log(f"{op}{args[:1]}: {e!r}")
                raise

    def _path(self, path: str) -> str:
        return os.path.join(self.root, path.lstrip("/"))

    # --- nodes ---------------------------------------------------------

    def _node_for(self, path: str) -> Node:
        """The node of a regular file, opening the backing file if needed."""
        try:
            fd = os.open(self._path(path), os.O_RDWR)
        except PermissionError:
            fd = os.open(self._path(path), os.O_RDONLY)
        st = os.fstat(fd)
        key = (st.st_dev, st.st_ino)
        node = self.nodes.get(key)
        if node is not None:
            os.close(fd)
            return node
        node = Node(fd, key)
        self.nodes[key] = node
        return node

    def _forget_if_idle(self, node: Node) -> None:
        if node.opens == 0 and (not node.dirty or not node.linked):
            if self.nodes.get(node.key) is node:
                del self.nodes[node.key]
            node.close()

    def _losing_last_link(self, path: str) -> None:
        """`path` is about to be unlinked or replaced: if that drops its
        inode's last link, its node is detached from the namespace."""
        try:
            st = os.lstat(self._path(path))
        except FileNotFoundError:
            return
        node = self.nodes.get((st.st_dev, st.st_ino))
        if node is not None and st.st_nlink <= 1:
            node.linked = False
            del self.nodes[node.key]
            self._forget_if_idle(node)

    def _new_handle(self, node: Node) -> int:
        fh = self.next_fh
        self.next_fh += 1
        self.handles[fh] = node
        node.opens += 1
        return fh

    # --- lifecycle -----------------------------------------------------

    def init(self, path):
        self.ready.set()

    def destroy(self, path):
        # Unmounted from outside (umount, fusermount -u): a clean unmount.
        for n in [n for n in self.nodes.values() if n.dirty]:
            n.flush()

    def flush_all(self) -> int:
        with self.mutex:
            nodes = [n for n in self.nodes.values() if n.dirty]
            for n in nodes:
                n.flush()
            self.dead = True
            return len(nodes)

    def power_cut(self, keep: float, rng: random.Random) -> tuple[int, int, int]:
        with self.mutex:
            self.dead = True
            dropped = kept = files = 0
            for n in list(self.nodes.values()) + list(self.handles.values()):
                if not n.dirty or n.fd < 0:
                    continue
                n.dirty = False
                files += 1
                for p, page in n.pages.items():
                    end = min(PAGE, n.size - p * PAGE)
                    if end > 0 and n.linked and rng.random() < keep:
                        os.pwrite(n.fd, page[:end], p * PAGE)
                        kept += 1
                    else:
                        dropped += 1
            return files, dropped, kept

    # --- files ---------------------------------------------------------

    def getattr(self, path, fh=None):
        if fh and fh in self.handles:
            node = self.handles[fh]
            st = os.fstat(node.fd)
        else:
            st = os.lstat(self._path(path))
            node = self.nodes.get((st.st_dev, st.st_ino)) if stat.S_ISREG(st.st_mode) else None
        attrs = {
            k: getattr(st, k)
            for k in ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_blocks",
                      "st_atime_ns", "st_mtime_ns", "st_ctime_ns")
        }
        for k in ("st_atime", "st_mtime", "st_ctime"):
            attrs[k] = attrs.pop(k + "_ns")
        if node is not None:
            attrs["st_size"] = node.size
            attrs["st_blocks"] = -(-node.size // 512)
        return attrs

    def open(self, path, flags):
        node = self._node_for(path)
        fh = self._new_handle(node)
        if flags & os.O_TRUNC:
            node.truncate(0)
        return fh

    def create(self, path, mode, fi=None):
        fd = os.open(self._path(path), os.O_CREAT | os.O_RDWR, mode)
        os.close(fd)
        return self._new_handle(self._node_for(path))

    def read(self, path, size, offset, fh):
        return self.handles[fh].read(offset, size)

    def write(self, path, data, offset, fh):
        self.handles[fh].write(offset, data)
        return len(data)

    def truncate(self, path, length, fh=None):
        node = self.handles[fh] if fh and fh in self.handles else self._node_for(path)
        node.truncate(length)
        self._forget_if_idle(node)

    def fsync(self, path, datasync, fh):
        self.handles[fh].flush()
        return 0

    def flush(self, path, fh):
        return 0  # close() makes nothing durable

    def release(self, path, fh):
        node = self.handles.pop(fh)
        node.opens -= 1
        self._forget_if_idle(node)
        return 0

    # --- metadata: applied to BACKING at once --------------------------

    def fsyncdir(self, path, datasync, fh):
        return 0

    def access(self, path, amode):
        if not os.access(self._path(path), amode):
            raise FuseOSError(errno.EACCES)
        return 0

    def readdir(self, path, fh):
        return [".", ".."] + os.listdir(self._path(path))

    def readlink(self, path):
        return os.readlink(self._path(path))

    def mknod(self, path, mode, dev):
        return os.mknod(self._path(path), mode, dev)

    def mkdir(self, path, mode):
        return os.mkdir(self._path(path), mode)

    def rmdir(self, path):
        return os.rmdir(self._path(path))

    def unlink(self, path):
        self._losing_last_link(path)
        return os.unlink(self._path(path))

    def rename(self, old, new):
        if os.path.lexists(self._path(new)) and not os.path.samefile(self._path(old), self._path(new)):
            self._losing_last_link(new)
        return os.rename(self._path(old), self._path(new))

    def link(self, target, source):
        return os.link(self._path(source), self._path(target))

    def symlink(self, target, source):
        return os.symlink(source, self._path(target))

    def chmod(self, path, mode):
        return os.chmod(self._path(path), mode)

    def chown(self, path, uid, gid):
        return os.chown(self._path(path), uid, gid)

    def utimens(self, path, times=None):
        if times is None:
            return os.utime(self._path(path))
        return os.utime(self._path(path), ns=times)

    def statfs(self, path):
        sv = os.statvfs(self._path(path))
        return {k: getattr(sv, k) for k in (
            "f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree",
            "f_files", "f_flag", "f_frsize", "f_namemax")}


def detach(mountpoint: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.umount2(os.fsencode(mountpoint), MNT_DETACH) != 0:
        log(f"umount2 {mountpoint}: {os.strerror(ctypes.get_errno())}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("backing")
    ap.add_argument("mountpoint")
    ap.add_argument("--keep-fraction", type=float, default=0.0,
                    help="on a power cut, each dirty page survives with this probability")
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    mountpoint = os.path.realpath(args.mountpoint)
    ready = threading.Event()
    fs = LossyFs(args.backing, ready)
    rng = random.Random(args.seed)

    def serve():
        try:
            FUSE(fs, mountpoint, foreground=True, nothreads=True, big_writes=True,
                 hard_remove=True, fsname="lossyfs", subtype="lossyfs")
        except Exception as e:  # noqa: BLE001 - reported, then the main thread exits
            log(f"mount failed: {e}")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    while not ready.is_set():
        if not thread.is_alive():
            return 1
        ready.wait(0.05)

    # libfuse installed its own handlers before init(); these replace them.
    def cut(_sig, _frame):
        files, dropped, kept = fs.power_cut(args.keep_fraction, rng)
        detach(mountpoint)
        log(f"power cut: {dropped} dirty pages dropped, {kept} kept, in {files} files")
        os._exit(0)

    def stop(_sig, _frame):
        n = fs.flush_all()
        detach(mountpoint)
        log(f"stopped: {n} dirty files written back")
        os._exit(0)

    signal.signal(signal.SIGUSR1, cut)
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, stop)
    print("READY", flush=True)
    while thread.is_alive():
        thread.join(0.2)
    log("unmounted from outside")
    return 0


if __name__ == "__main__":
    sys.exit(main())
