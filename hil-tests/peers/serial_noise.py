#!/usr/bin/env python3
"""A noisy line between two serial paths, for the HIL tests.

    agent <-> ttyA=ttyB <-> serial_noise.py --a ttyB --b ttyC <-> ttyC=ttyD <-> simulator

Forwards bytes both ways. Bytes are grouped into chunks: a chunk ends when
the line has been quiet for --gap milliseconds (default 3) or reaches 256
bytes, so a Modbus RTU frame written at once is one chunk. For each chunk:

  --corrupt P   with probability P, flip one random bit of one random byte
  --garbage P   with probability P, send 1..8 random bytes just before the
                chunk (they sit between the previous frame and this one)

Both ports are opened raw (termios cfmakeraw: no echo, no CR/LF mapping, no
flow control), so no byte is translated. If a port goes away (socat killed),
the relay opens it again when it is back; what was in flight is lost.

Prints READY on stdout once both ports are open. Commands on stdin, one per
line, each answered by one line:

    stats            -> {"forwarded": chunks, "bytes": n, "corrupted": n,
                         "garbage": n, "a_to_b": {...}, "b_to_a": {...}}
    set corrupt P    -> OK
    set garbage P    -> OK

Exits 0 on stdin EOF, SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import random
import select
import signal
import sys
import termios
import time
import tty

MAX_CHUNK = 256


class Port:
    def __init__(self, path: str):
        self.path = path
        self.fd: int | None = None

    def open(self) -> bool:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError:
            return False
        try:
            tty.setraw(fd, termios.TCSANOW)
            attrs = termios.tcgetattr(fd)
            attrs[2] |= termios.CLOCAL | termios.CREAD
            attrs[2] &= ~termios.CRTSCTS
            termios.tcsetattr(fd, termios.TCSANOW, attrs)
        except termios.error:
            pass  # not a tty (a fifo in a unit test): nothing to configure
        self.fd = fd
        return True

    def close(self):
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None

    def write_all(self, data: bytes) -> bool:
        """Blocking write with a bound; False when the port is gone."""
        deadline = time.monotonic() + 2.0
        while data:
            if self.fd is None:
                return False
            try:
                n = os.write(self.fd, data)
                data = data[n:]
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return True  # nobody reads: drop the rest, like a line
                select.select([], [self.fd], [], 0.05)
            except OSError:
                return False
        return True


class Direction:
    def __init__(self, name: str, src: Port, dst: Port):
        self.name = name
        self.src = src
        self.dst = dst
        self.buf = bytearray()
        self.last = 0.0
        self.stats = {"forwarded": 0, "bytes": 0, "corrupted": 0, "garbage": 0}


class Relay:
    def __init__(self, args):
        self.a = Port(args.a)
        self.b = Port(args.b)
        self.gap = args.gap / 1000.0
        self.corrupt = args.corrupt
        self.garbage = args.garbage
        self.rng = random.Random(args.seed)
        self.dirs = [Direction("a_to_b", self.a, self.b), Direction("b_to_a", self.b, self.a)]
        self.stdin_buf = b""
        self.running = True
        self.reopens = 0

    def stats(self) -> str:
        total = {k: sum(d.stats[k] for d in self.dirs) for k in self.dirs[0].stats}
        for d in self.dirs:
            total[d.name] = dict(d.stats)
        total["corrupt"] = self.corrupt
        total["garbage_p"] = self.garbage
        total["reopens"] = self.reopens
        return json.dumps(total, separators=(",", ":"))

    def command(self, line: str) -> str:
        words = line.split()
        if words == ["stats"]:
            return self.stats()
        if len(words) == 3 and words[0] == "set" and words[1] in ("corrupt", "garbage"):
            try:
                p = float(words[2])
            except ValueError:
                return f"ERR not a probability: {words[2]}"
            if not 0.0 <= p <= 1.0:
                return f"ERR not a probability: {words[2]}"
            setattr(self, words[1], p)
            return "OK"
        return f"ERR unknown command: {line.strip()}"

    def flush(self, d: Direction):
        chunk = bytearray(d.buf)
        d.buf.clear()
        if not chunk:
            return
        if self.garbage > 0 and self.rng.random() < self.garbage:
            junk = bytes(self.rng.randrange(256) for _ in range(self.rng.randint(1, 8)))
            d.dst.write_all(junk)
            d.stats["garbage"] += 1
        if self.corrupt > 0 and self.rng.random() < self.corrupt:
            i = self.rng.randrange(len(chunk))
            chunk[i] ^= 1 << self.rng.randrange(8)
            d.stats["corrupted"] += 1
        d.dst.write_all(bytes(chunk))
        d.stats["forwarded"] += 1
        d.stats["bytes"] += len(chunk)

    def lost(self, port: Port):
        sys.stderr.write(f"serial_noise: {port.path} lost\n")
        port.close()
        for d in self.dirs:
            if d.src is port or d.dst is port:
                d.buf.clear()

    def run(self) -> int:
        stdin = sys.stdin.fileno()
        os.set_blocking(stdin, False)
        while self.running:
            for port in (self.a, self.b):
                if port.fd is None and port.open():
                    self.reopens += 1
            now = time.monotonic()
            timeout = 0.1
            for d in self.dirs:
                if d.buf:
                    timeout = min(timeout, max(0.0, d.last + self.gap - now))
            fds = [stdin] + [p.fd for p in (self.a, self.b) if p.fd is not None]
            try:
                ready, _, _ = select.select(fds, [], [], timeout)
            except InterruptedError:
                continue
            now = time.monotonic()
            for d in self.dirs:
                if d.src.fd is not None and d.src.fd in ready:
                    try:
                        data = os.read(d.src.fd, MAX_CHUNK)
                    except OSError as exc:
                        if exc.errno in (errno.EAGAIN, errno.EINTR):
                            continue
                        self.lost(d.src)
                        continue
                    if not data:
                        self.lost(d.src)
                        continue
                    d.buf += data
                    d.last = now
                    if len(d.buf) >= MAX_CHUNK:
                        self.flush(d)
            for d in self.dirs:
                if d.buf and now - d.last >= self.gap:
                    self.flush(d)
            if stdin in ready:
                try:
                    data = os.read(stdin, 4096)
                except BlockingIOError:
                    data = None
                if data == b"":
                    break
                if data:
                    self.stdin_buf += data
                    while b"\n" in self.stdin_buf:
                        line, self.stdin_buf = self.stdin_buf.split(b"\n", 1)
                        if line.strip():
                            print(self.command(line.decode(errors="replace")), flush=True)
        for d in self.dirs:
            self.flush(d)
        return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--a", required=True, metavar="PATH")
    p.add_argument("--b", required=True, metavar="PATH")
    p.add_argument("--corrupt", type=float, default=0.0, metavar="P")
    p.add_argument("--garbage", type=float, default=0.0, metavar="P")
    p.add_argument("--gap", type=float, default=3.0, metavar="MS", help="silence that ends a chunk")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--wait", type=float, default=10.0, help="seconds to wait for the ports")
    args = p.parse_args()
    for name in ("corrupt", "garbage"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            p.error(f"--{name} must be within 0..1")

    relay = Relay(args)

    def stop(*_):
        relay.running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    deadline = time.monotonic() + args.wait
    while not (relay.a.fd is not None or relay.a.open()) or not (relay.b.fd is not None or relay.b.open()):
        if time.monotonic() > deadline:
            print(f"ERR cannot open {args.a} and {args.b}", flush=True)
            return 2
        time.sleep(0.05)
    print("READY", flush=True)
    return relay.run()


if __name__ == "__main__":
    sys.exit(main())
