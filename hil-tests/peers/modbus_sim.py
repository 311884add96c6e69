#!/usr/bin/env python3
"""A Modbus slave simulator for the HIL tests, on pymodbus 3.16.

Serves Modbus RTU on a serial path (a socat pty end, or a real adapter) or
Modbus TCP on 127.0.0.1, for several slave ids with their own data.

    modbus_sim.py --rtu PATH [--baud 19200] --map MAP.json
    modbus_sim.py --tcp PORT --map MAP.json

MAP.json:

    {"slaves": {"1": {"hr": [u16, ...], "ir": [u16, ...],
                      "co": [0/1, ...], "di": [0/1, ...]},
                "2": {...}}}

Each list starts at protocol address 0 (what goes on the wire). A table that
is absent (or empty) answers every read with exception 02 (illegal data
address); reading past the end of a register table does the same. Bit tables
are padded with 0 up to a multiple of 16 (pymodbus stores bits in 16-bit
registers), so coils 10..15 of a 10-coil table read as 0.

Once serving, prints READY on stdout. Then reads commands on stdin, one per
line, and answers each with one line, `OK ...` or `ERR reason`:

    mute ID                         the slave stops answering at all (dead device)
    unmute ID
    set ID TABLE ADDR V [V ...]     TABLE in hr/ir/co/di, ADDR 0-based
    get ID TABLE ADDR [COUNT]       -> OK v v ...
    delay ID MS                     answer after MS milliseconds (0: at once)
    stats                           -> one line of JSON (not prefixed by OK)

stats: {"served": {"1": n, ...}, "exceptions": {...}, "dropped": {...},
        "unknown": {"9": n}, "reopens": n}
  served      requests answered (exception answers included)
  exceptions  of those, the exception answers
  dropped     requests received for a muted slave (not answered)
  unknown     requests for ids absent from the map (not answered)
  reopens     times the serial port was lost and opened again

Requests for an id that is not in the map get no answer, as on a real bus.
(pymodbus itself would answer them with exception 04, device failure.)

RTU framing: pymodbus answers as soon as a request decodes (it does not wait
for the 3.5-character silence) and then discards everything else it had
received, so a second request written in the same burst is lost. A partial
or garbled frame is dropped after --frame-gap ms of silence (default 20), as
a real slave's receiver would; pymodbus alone would keep it and spoil the
next request.

If the serial port goes away (socat killed: an unplug), the simulator keeps
running and opens the path again as soon as it is back.

Exits 0 on stdin EOF, SIGTERM or SIGINT. Logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import threading
import time

from pymodbus import FramerType
from pymodbus.pdu import ExceptionResponse
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.simulator.simcore import SimCore
from pymodbus.simulator.simutils import SimUtils

TABLES = ("co", "di", "hr", "ir")  # the order of SimDevice's 4-tuple
BLOCK = {"co": "c", "di": "d", "hr": "h", "ir": "i"}
READ_FC = {"co": 1, "di": 2, "hr": 3, "ir": 4}

log = logging.getLogger("modbus_sim")


class MapError(Exception):
    pass


def load_map(path: str) -> dict[int, dict[str, list[int]]]:
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    slaves = doc.get("slaves") if isinstance(doc, dict) else None
    if not isinstance(slaves, dict) or not slaves:
        raise MapError('the map needs {"slaves": {"ID": {...}}} with at least one slave')
    out: dict[int, dict[str, list[int]]] = {}
    for key, tables in slaves.items():
        try:
            dev_id = int(key)
        except ValueError:
            raise MapError(f"slave id {key!r} is not a number") from None
        if not 1 <= dev_id <= 247:
            raise MapError(f"slave id {dev_id} is outside 1..247")
        if not isinstance(tables, dict):
            raise MapError(f"slave {dev_id}: expected an object of tables")
        unknown = set(tables) - set(TABLES)
        if unknown:
            raise MapError(f"slave {dev_id}: unknown tables {sorted(unknown)}")
        out[dev_id] = {}
        for name in TABLES:
            values = tables.get(name) or []
            if not isinstance(values, list):
                raise MapError(f"slave {dev_id}.{name}: expected a list")
            checked = []
            for i, v in enumerate(values):
                if isinstance(v, bool):
                    v = int(v)
                if not isinstance(v, int):
                    raise MapError(f"slave {dev_id}.{name}[{i}]: {v!r} is not an integer")
                limit = 1 if name in ("co", "di") else 0xFFFF
                if not 0 <= v <= limit:
                    raise MapError(f"slave {dev_id}.{name}[{i}]: {v} is outside 0..{limit}")
                checked.append(v)
            out[dev_id][name] = checked
    return out


def build_core(slaves: dict[int, dict[str, list[int]]]) -> SimCore:
    """One SimDevice per slave, with 4 separate blocks (co, di, hr, ir).

    This is what pymodbus 3.16 builds internally from the deprecated
    ModbusDeviceContext(co=, di=, hr=, ir=), without its deprecation warnings.
    With separate blocks, coils and discrete inputs are addressed per bit.
    """
    devices = []
    for dev_id, tables in slaves.items():
        blocks = []
        for name in TABLES:
            values = tables[name]
            if name in ("co", "di"):
                data = SimData(0, values=[bool(v) for v in values] or [False], datatype=DataType.BITS)
            elif values:
                data = SimData(0, values=values, datatype=DataType.REGISTERS)
            else:
                data = SimData(0, datatype=DataType.INVALID)
            blocks.append([data])
        devices.append(SimDevice(dev_id, simdata=tuple(blocks)))
    core = SimCore(devices)
    # An absent bit table: pymodbus cannot declare an invalid bit block, so
    # mark its first (only) register invalid after the fact.
    for dev_id, tables in slaves.items():
        for name in ("co", "di"):
            if not tables[name]:
                start, count, regs, flags = core.devices[dev_id].block[BLOCK[name]]
                flags[0] = DataType.INVALID
    return core


class GapRequestHandler(ServerRequestHandler):
    """pymodbus's RTU request handler, plus the receiver reset of a real slave.

    pymodbus frames RTU by content only: a partial or garbled request stays
    in its buffer, however long the line is then silent, and spoils the next
    request. A real slave drops an incomplete frame after 3.5 character
    times of silence. This handler drops buffered bytes older than
    `frame_gap` seconds when new bytes arrive.
    """

    frame_gap = 0.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.last_rx = 0.0

    def datagram_received(self, data: bytes, addr) -> None:
        now = time.monotonic()
        if self.frame_gap and self.recv_buffer and now - self.last_rx > self.frame_gap:
            log.warning("dropping %d stale bytes: %s", len(self.recv_buffer), self.recv_buffer.hex(" "))
            self.recv_buffer = b""
        self.last_rx = now
        super().datagram_received(data, addr)


class GapSerialServer(ModbusSerialServer):
    def callback_new_connection(self):
        return GapRequestHandler(self, self.trace_packet, self.trace_pdu, self.trace_connect)


class Simulator:
    def __init__(self, args, slaves):
        self.args = args
        self.slaves = slaves
        self.core = build_core(slaves)
        self.muted: set[int] = set()
        self.delays: dict[int, float] = {}
        ids = [str(i) for i in sorted(slaves)]
        self.served = dict.fromkeys(ids, 0)
        self.exceptions = dict.fromkeys(ids, 0)
        self.dropped = dict.fromkeys(ids, 0)
        self.unknown: dict[str, int] = {}
        self.reopens = 0
        self.server = None
        self.stop = asyncio.Event()

    # -- the hook into pymodbus ------------------------------------------
    def trace_pdu(self, sending: bool, pdu):
        """Called by pymodbus for each decoded request and each response.

        Returning None for a request makes the server drop it silently
        (ServerRequestHandler.callback_data only handles a truthy last_pdu).
        """
        dev = pdu.dev_id
        if sending:
            key = str(dev)
            if key in self.served:
                self.served[key] += 1
                if isinstance(pdu, ExceptionResponse):
                    self.exceptions[key] += 1
            return pdu
        if dev not in self.slaves:
            self.unknown[str(dev)] = self.unknown.get(str(dev), 0) + 1
            return None
        if dev in self.muted:
            self.dropped[str(dev)] += 1
            return None
        return pdu

    async def delay_action(self, dev_id, *_args):
        if d := self.delays.get(dev_id):
            await asyncio.sleep(d)
        return None

    # -- serving ---------------------------------------------------------
    def new_server(self):
        common = dict(trace_pdu=self.trace_pdu)
        # pymodbus builds its own memory from the context it is given; give
        # it a placeholder and swap in the shared one below.
        placeholder = SimDevice(0, simdata=SimData(0, values=0, datatype=DataType.REGISTERS))
        if self.args.tcp is not None:
            server = ModbusTcpServer(
                placeholder,
                framer=FramerType.SOCKET,
                address=("127.0.0.1", self.args.tcp),
                **common,
            )
        else:
            GapRequestHandler.frame_gap = self.args.frame_gap / 1000.0
            server = GapSerialServer(
                placeholder,
                framer=FramerType.RTU,
                port=self.args.rtu,
                baudrate=self.args.baud,
                bytesize=8,
                parity="N",
                stopbits=1,
                **common,
            )
        # All servers (one per reopen of the port) share the same memory.
        server.context = self.core
        return server

    async def open(self) -> bool:
        server = self.new_server()
        try:
            await server.serve_forever(background=True)
        except RuntimeError:
            return False
        self.server = server
        return True

    def port_lost(self) -> bool:
        if self.args.tcp is not None or self.server is None:
            return False
        transport = self.server.transport
        return transport is None or getattr(transport, "sync_serial", None) is None

    async def watch_port(self):
        """pymodbus does not reopen a serial server's port; do it here."""
        while not self.stop.is_set():
            await asyncio.sleep(0.05)
            if not self.port_lost():
                continue
            log.warning("serial port %s lost; waiting for it to come back", self.args.rtu)
            old, self.server = self.server, None
            try:
                await old.shutdown()
            except Exception:  # noqa: BLE001 -- the port is gone anyway
                pass
            while not self.stop.is_set():
                await asyncio.sleep(0.05)
                if os.path.exists(self.args.rtu) and await self.open():
                    self.reopens += 1
                    log.warning("serial port %s open again", self.args.rtu)
                    break

    # -- commands --------------------------------------------------------
    def slave(self, word: str) -> int:
        dev = int(word)
        if dev not in self.slaves:
            raise ValueError(f"no slave {dev} in the map")
        return dev

    async def command(self, line: str) -> str:
        words = line.split()
        if not words:
            return "ERR empty command"
        cmd, rest = words[0], words[1:]
        try:
            if cmd == "stats" and not rest:
                return json.dumps(
                    {
                        "served": self.served,
                        "exceptions": self.exceptions,
                        "dropped": self.dropped,
                        "unknown": self.unknown,
                        "reopens": self.reopens,
                    },
                    separators=(",", ":"),
                )
            if cmd in ("mute", "unmute") and len(rest) == 1:
                dev = self.slave(rest[0])
                (self.muted.add if cmd == "mute" else self.muted.discard)(dev)
                return "OK"
            if cmd == "delay" and len(rest) == 2:
                dev = self.slave(rest[0])
                ms = float(rest[1])
                if ms < 0:
                    raise ValueError("negative delay")
                self.delays[dev] = ms / 1000.0
                runtime = self.core.devices[dev]
                runtime.action = (lambda *a, _d=dev: self.delay_action(_d, *a)) if ms else None
                return "OK"
            if cmd in ("set", "get") and len(rest) >= 3:
                dev = self.slave(rest[0])
                table = rest[1]
                if table not in BLOCK:
                    raise ValueError(f"unknown table {table!r} (hr, ir, co, di)")
                addr = int(rest[2])
                if cmd == "set":
                    values = [int(v, 0) for v in rest[3:]]
                    if not values:
                        raise ValueError("no value")
                    return self.write(dev, table, addr, values)
                count = int(rest[3]) if len(rest) > 3 else 1
                return "OK " + " ".join(str(v) for v in self.read(dev, table, addr, count))
        except ValueError as exc:
            return f"ERR {exc}"
        return f"ERR unknown command or wrong arguments: {line.strip()}"

    def locate(self, dev: int, table: str, addr: int, count: int):
        start, reg_count, regs, flags = self.core.devices[dev].block[BLOCK[table]]
        if table in ("co", "di"):
            if not self.slaves[dev][table]:
                raise ValueError(f"slave {dev} has no {table} table")
            first, last = addr // 16 - start, (addr + count - 1) // 16 - start
            if addr < 0 or first < 0 or last >= reg_count - 1:
                raise ValueError(f"{table} address {addr}..{addr + count - 1} is outside the table")
        else:
            off = addr - start
            if addr < 0 or off < 0 or off + count > reg_count - 1 or flags[off] == DataType.INVALID:
                raise ValueError(f"{table} address {addr}..{addr + count - 1} is outside the table")
        return start, regs

    def read(self, dev, table, addr, count):
        start, regs = self.locate(dev, table, addr, count)
        if table in ("co", "di"):
            bits = SimUtils.registersToBits(regs[: len(regs) - 1])
            base = start * 16
            return [int(b) for b in bits[addr - base : addr - base + count]]
        return regs[addr - start : addr - start + count]

    def write(self, dev, table, addr, values):
        limit = 1 if table in ("co", "di") else 0xFFFF
        for v in values:
            if not 0 <= v <= limit:
                raise ValueError(f"{v} is outside 0..{limit} for {table}")
        start, regs = self.locate(dev, table, addr, len(values))
        if table in ("co", "di"):
            last = len(regs) - 1  # the trailing sentinel register stays
            bits = SimUtils.registersToBits(regs[:last])
            base = start * 16
            for i, v in enumerate(values):
                bits[addr - base + i] = bool(v)
            regs[:last] = SimUtils.bitsToRegisters(bits)
        else:
            regs[addr - start : addr - start + len(values)] = values
        return "OK"


def stdin_reader(loop, sim: Simulator):
    """Commands on stdin, answered in order; EOF stops the simulator."""
    for line in sys.stdin:
        if not line.strip():
            continue
        fut = asyncio.run_coroutine_threadsafe(sim.command(line), loop)
        try:
            answer = fut.result()
        except Exception as exc:  # noqa: BLE001 -- report, keep serving
            answer = f"ERR {type(exc).__name__}: {exc}"
        print(answer, flush=True)
    loop.call_soon_threadsafe(sim.stop.set)


async def main_async(args, slaves) -> int:
    sim = Simulator(args, slaves)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, sim.stop.set)

    deadline = loop.time() + args.wait
    while (args.rtu and not os.path.exists(args.rtu)) or not await sim.open():
        if loop.time() > deadline:
            where = f"127.0.0.1:{args.tcp}" if args.tcp is not None else args.rtu
            print(f"ERR cannot serve on {where}", flush=True)
            return 2
        await asyncio.sleep(0.05)

    print("READY", flush=True)
    threading.Thread(target=stdin_reader, args=(loop, sim), daemon=True).start()
    watcher = asyncio.create_task(sim.watch_port())
    await sim.stop.wait()
    watcher.cancel()
    if sim.server is not None:
        await sim.server.shutdown()
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--rtu", metavar="PATH", help="serve Modbus RTU on this serial device (8N1)")
    where.add_argument("--tcp", metavar="PORT", type=int, help="serve Modbus TCP on 127.0.0.1:PORT")
    p.add_argument("--baud", type=int, default=19200)
    p.add_argument("--map", required=True, metavar="FILE.json")
    p.add_argument("--wait", type=float, default=10.0, help="seconds to wait for the port (default 10)")
    p.add_argument(
        "--frame-gap",
        type=float,
        default=20.0,
        metavar="MS",
        help="RTU: drop a partial frame after this much silence (default 20; 0: never, as pymodbus)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="pymodbus debug logs on stderr")
    args = p.parse_args()

    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="modbus_sim %(levelname)s %(name)s: %(message)s",
    )
    try:
        slaves = load_map(args.map)
    except (OSError, ValueError, MapError) as exc:
        print(f"ERR bad map {args.map}: {exc}", flush=True)
        return 2
    return asyncio.run(main_async(args, slaves))


if __name__ == "__main__":
    sys.exit(main())
