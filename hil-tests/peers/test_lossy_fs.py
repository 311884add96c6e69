#!/usr/bin/env python3
"""Self-test of lossy_fs.py: it loses what was not fsynced and keeps the rest.

    timeout 300 .venv/bin/python hil-tests/peers/test_lossy_fs.py

Needs root, /dev/fuse, libfuse2 and fusepy (scripts/test.sh installs them).
Exits 0 when every check passes, 1 otherwise. Each check mounts a fresh
backing directory, works through the mount, cuts the power (SIGUSR1) and
mounts the backing directory again to look at what survived:

  a. SQLite, WAL, synchronous=FULL: a writer process commits transactions
     and prints the id of each one after commit() returns; it is SIGKILLed
     mid-stream, then the power is cut. Every printed id must be there and
     `PRAGMA integrity_check` must say ok. Done twice: with all unsynced
     pages lost, and with a random half of them written back (torn writes).
  b. The same with synchronous=OFF: committed transactions are lost (the
     layer is not a no-op).
  c. Plain files: fsynced data is kept, unsynced writes and truncations are
     lost, a file created and never synced is there but empty.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
LOSSY_FS = HERE / "lossy_fs.py"
DEADLINE = 30.0

WRITER = r"""
import sqlite3, sys
db, sync = sys.argv[1], sys.argv[2]
c = sqlite3.connect(db, isolation_level=None)
c.execute("PRAGMA journal_mode=WAL")
c.execute(f"PRAGMA synchronous={sync}")
c.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, body BLOB)")
for i in range(1_000_000):
    c.execute("BEGIN")
    c.execute("INSERT INTO t VALUES (?, randomblob(?))", (i, 200 + (i * 7919) % 12000))
    c.execute("COMMIT")
    print(i, flush=True)
"""


def is_mounted(path: Path) -> bool:
    target = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == target for line in f)


def poll(what: str, cond) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class Mount:
    """lossy_fs.py on `backing` at `mnt`."""

    def __init__(self, backing: Path, mnt: Path, *extra: str):
        self.mnt = mnt
        self.proc = subprocess.Popen(
            [sys.executable, str(LOSSY_FS), str(backing), str(mnt), *extra],
            stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if line.strip() != "READY":
            self.proc.wait(5)
            raise AssertionError(f"lossy_fs.py did not mount (exit {self.proc.returncode})")

    def _signal_and_wait(self, sig: int) -> None:
        self.proc.send_signal(sig)
        self.proc.wait(DEADLINE)
        poll("the unmount", lambda: not is_mounted(self.mnt))

    def power_cut(self) -> None:
        self._signal_and_wait(signal.SIGUSR1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self._signal_and_wait(signal.SIGTERM)


def sqlite_crash(tmp: Path, sync: str, kill_after: int, *fs_args: str) -> tuple[list[int], list[int], str]:
    """Commits through the mount, SIGKILLs the writer after `kill_after`
    acknowledged commits, cuts the power, remounts. Returns (acknowledged
    ids, ids found, integrity_check answer)."""
    backing, mnt = tmp / "backing", tmp / "mnt"
    backing.mkdir()
    mnt.mkdir()
    fs = Mount(backing, mnt, *fs_args)
    acked: list[int] = []
    try:
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(mnt / "buffer.db"), sync],
                                  stdout=subprocess.PIPE, text=True)
        for line in writer.stdout:
            acked.append(int(line))
            if len(acked) == kill_after:
                break
        writer.kill()  # SIGKILL: the power goes at this instant
        writer.wait()
        acked += [int(line) for line in writer.stdout]
        assert writer.returncode == -signal.SIGKILL, f"writer ended by itself ({writer.returncode})"
        fs.power_cut()
    finally:
        fs.stop()
    fs = Mount(backing, mnt)
    try:
        c = sqlite3.connect(mnt / "buffer.db")
        integrity = c.execute("PRAGMA integrity_check").fetchone()[0]
        try:
            found = [r[0] for r in c.execute("SELECT id FROM t ORDER BY id")]
        except sqlite3.OperationalError:  # no such table: nothing survived
            found = []
        c.close()
    finally:
        fs.stop()
    return acked, found, integrity


def check_wal_full(tmp: Path, *fs_args: str) -> None:
    acked, found, integrity = sqlite_crash(tmp, "FULL", 1500, *fs_args)
    missing = sorted(set(acked) - set(found))
    print(f"  {len(acked)} commits acknowledged, {len(found)} rows after the cut, "
          f"integrity_check: {integrity}")
    assert integrity == "ok", integrity
    assert not missing, f"{len(missing)} acknowledged commits lost, first {missing[:5]}"


def check_sync_off(tmp: Path) -> None:
    acked, found, integrity = sqlite_crash(tmp, "OFF", 1500)
    lost = sorted(set(acked) - set(found))
    print(f"  {len(acked)} commits acknowledged, {len(found)} rows after the cut, "
          f"{len(lost)} lost, integrity_check: {integrity}")
    assert lost, "synchronous=OFF lost nothing: the layer does not drop unsynced writes"


def check_plain_files(tmp: Path) -> None:
    backing, mnt = tmp / "backing", tmp / "mnt"
    backing.mkdir()
    mnt.mkdir()
    synced, extra = os.urandom(10_000), os.urandom(7_000)
    fs = Mount(backing, mnt)
    try:
        with open(mnt / "synced", "wb") as f:  # fsynced, then more unsynced
            f.write(synced)
            f.flush()
            os.fsync(f.fileno())
            f.write(extra)
        with open(mnt / "unsynced", "wb") as f:
            f.write(extra)
        with open(mnt / "truncated", "wb") as f:  # fsynced, then shortened
            f.write(synced)
            f.flush()
            os.fsync(f.fileno())
            f.truncate(100)
        seen = (mnt / "synced").read_bytes(), (mnt / "unsynced").read_bytes()
        assert seen == (synced + extra, extra), "the mount does not show its own writes"
        assert (mnt / "truncated").stat().st_size == 100
        assert (backing / "synced").read_bytes() == synced, "the backing file does not hold exactly the fsynced data"
        fs.power_cut()
    finally:
        fs.stop()
    fs = Mount(backing, mnt)
    try:
        after = {n: (mnt / n).read_bytes() for n in ("synced", "unsynced", "truncated")}
    finally:
        fs.stop()
    print(f"  after the cut: synced {len(after['synced'])} bytes, unsynced "
          f"{len(after['unsynced'])}, truncated {len(after['truncated'])}")
    assert after["synced"] == synced, "fsynced data changed"
    assert after["unsynced"] == b"", "unsynced data survived"
    assert after["truncated"] == synced, "an unsynced truncation survived"


def main() -> int:
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        print("FAIL: needs root and /dev/fuse")
        return 1
    checks = [
        ("a. WAL + synchronous=FULL: acknowledged commits survive", check_wal_full, ()),
        ("a'. the same with torn writes (--keep-fraction 0.5)", check_wal_full,
         ("--keep-fraction", "0.5", "--seed", "7")),
        ("b. negative control, synchronous=OFF: commits are lost", check_sync_off, ()),
        ("c. plain files: fsynced kept, unsynced lost", check_plain_files, ()),
    ]
    failed = 0
    for name, check, args in checks:
        print(name, flush=True)
        with tempfile.TemporaryDirectory(prefix="lossy-fs-") as tmp:
            try:
                check(Path(tmp), *args)
                print("  ok", flush=True)
            except Exception as e:  # noqa: BLE001 - every check runs and reports
                failed += 1
                print(f"  FAIL: {type(e).__name__}: {e}", flush=True)
    print("PASS" if not failed else f"FAIL: {failed} of {len(checks)} checks")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
