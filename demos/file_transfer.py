"""File transfer: stream a file of any size over TCP, in bounded memory, and verify it.

Two subcommands::

    python -m demos.file_transfer receive --port 9000 --dir incoming/
    python -m demos.file_transfer send --port 9000 big.iso

The wire format, from sender to receiver, is a header then the raw bytes::

    +----------------+--------------------------------+----------------------+
    | 4 bytes: N     | N bytes: JSON header           | size bytes: the file |
    | (big-endian)   | {"name", "size", "sha256"}     |                      |
    +----------------+--------------------------------+----------------------+

The first two fields are one frame of ``reactor.framing.LengthPrefixFramer``
(the header is small and has a length limit); the file itself is *not*
framed, since it may be far larger than any buffer we want. The receiver
answers with one line, ``OK <sha256>`` or ``FAIL <reason>``, and hangs up.
The sender half-closes (``write_eof``) after the last byte.

Bounded memory, on both sides, whatever the file size:

- The **sender** reads the file one chunk at a time, and only while the
  transport is not paused: when the write buffer passes its high-water mark,
  ``pause_writing()`` stops the reading, and ``resume_writing()`` starts it
  again. (Reading the whole file and writing it at once would "work" too,
  by copying the file into memory.) The SHA-256 goes in the header, so the
  sender reads the file twice: once to hash it, once to send it.
- The **receiver** is a ``BufferedProtocol``: the transport reads straight
  into one fixed buffer of ours (``get_buffer``), and ``buffer_updated(n)``
  writes those *n* bytes to disk and to the hash before the next read. Disk
  writes are ordinary blocking calls, so a slow disk simply delays the next
  read: TCP's window then slows the sender down.

The file is written under a temporary name and renamed into place only if
its size and SHA-256 match the header; otherwise it is deleted. A file of
the same name already in ``--dir`` is never replaced unless the receiver
runs with ``--overwrite``: the transfer is refused (``FAIL ... exists``).

Exit status of ``send``: 0 only if the receiver replied ``OK``. ``receive``
exits with status 2 if it cannot start (port taken, ...).
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import logging
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any, BinaryIO, Optional

from demos import cli
from demos.cli import why
from demos.tracing_options import add_trace_options, traced
from reactor import BufferedProtocol, FramingError, LengthPrefixFramer, LineProtocol, Reactor

PROG = "python -m demos.file_transfer"  # how users run it, for --help and errors

log = logging.getLogger("demos.file_transfer")

MAX_HEADER = 64 * 1024  # bytes of JSON: generous for a name, a size and a hash
CHUNK_SIZE = 256 * 1024  # bytes per file read (sender) and per recv_into (receiver)
CHUNKS_PER_TURN = 16  # the sender yields to the loop after this many chunks
SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


# -- receiving ----------------------------------------------------------------

class Receive(BufferedProtocol):
    """One incoming file: the header, then the bytes, then the verdict."""

    def __init__(self, directory: Path, stats: dict[str, int], overwrite: bool = False) -> None:
        self.directory = directory
        self.stats = stats
        self.overwrite = overwrite  # may a transfer replace a file of the same name?
        # The one buffer every read goes into, for the whole transfer.
        self.buffer = memoryview(bytearray(CHUNK_SIZE))
        self.framer: Optional[LengthPrefixFramer] = LengthPrefixFramer(MAX_HEADER)
        self.file: Optional[BinaryIO] = None
        self.part: Optional[Path] = None
        self.final: Optional[Path] = None
        self.expected_size = 0
        self.expected_sha256 = ""
        self.received = 0
        self.digest = hashlib.sha256()
        self.done = False  # the verdict has been sent
        self.got_eof = False  # the sender half-closed: it will send nothing more

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.peer = transport.get_extra_info("peername")

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        if self.done:
            return  # we replied already; anything more is not our business
        data = self.buffer[:nbytes]
        if self.framer is not None:
            data = self.read_header(data)
            if data is None:
                return  # header incomplete, or refused
        if data:
            self.write_data(data)

    def read_header(self, data: memoryview) -> Optional[memoryview]:
        """Feed the header framer; return the bytes that follow the header."""
        framer = self.framer
        assert framer is not None
        try:
            framer.feed(data)
            frame = framer.next_frame()
        except FramingError as exc:  # FrameTooLong: a header over MAX_HEADER
            self.finish(False, f"bad header: {exc}")
            return None
        if frame is None:
            return None  # not all of it yet
        # next_frame() is called after every feed(), so the frame ended in
        # this very read: what the framer still holds is the tail of *data*,
        # the file's first bytes. Take them back and drop the framer.
        rest = data[len(data) - framer.buffered:]
        self.framer = None
        try:
            self.start_file(json.loads(frame))
        except (ValueError, TypeError, KeyError) as exc:
            self.finish(False, f"bad header: {exc}")
            return None
        except FileExistsError:
            self.finish(False, self.refusal())
            return None
        except OSError as exc:
            self.finish(False, f"cannot write the file: {exc.strerror}")
            return None
        if self.expected_size == 0:
            self.finish_file()
        return rest

    def start_file(self, header: Any) -> None:
        name, size, sha = header["name"], header["size"], header["sha256"]
        if not isinstance(name, str) or not isinstance(size, int) or not isinstance(sha, str):
            raise TypeError("name, size and sha256 must be a string, an integer and a string")
        # Never trust a path from the network: keep only a plain file name,
        # so "../../etc/passwd" cannot write outside our directory.
        safe = os.path.basename(name.replace("\\", "/"))
        if safe in ("", ".", "..") or size < 0 or not SHA256_HEX.fullmatch(sha):
            raise ValueError(f"unacceptable header {header!r}")
        self.expected_size, self.expected_sha256 = size, sha
        self.final = self.directory / safe
        # Refuse now, before the sender streams the whole file for nothing.
        # (lexists: a symlink of that name, even a dangling one, counts too.)
        if not self.overwrite and os.path.lexists(self.final):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(self.final))
        self.part = self.directory / f".{safe}.{os.getpid()}.{id(self)}.part"
        self.file = open(self.part, "wb")
        log.info("%s: receiving %s (%d bytes)", _fmt(self.peer), safe, size)

    def write_data(self, data: memoryview) -> None:
        if self.file is None:
            return  # a verdict already closed the file
        if self.received + len(data) > self.expected_size:
            self.finish(False, "more bytes than the header announced")
            return
        try:
            self.file.write(data)
        except OSError as exc:
            self.finish(False, f"cannot write the file: {exc.strerror}")
            return
        self.digest.update(data)
        self.received += len(data)
        if self.received == self.expected_size:
            self.finish_file()

    def finish_file(self) -> None:
        sha = self.digest.hexdigest()
        if sha != self.expected_sha256:
            self.finish(False, f"sha256 mismatch: got {sha}")
        else:
            self.finish(True, sha)

    def eof_received(self) -> Optional[bool]:
        self.got_eof = True
        if not self.done:
            # The sender half-closed before sending everything. It can
            # still read our answer, so answer (finish() then closes).
            self.finish(False, f"truncated: {self.received} of {self.expected_size} bytes")
        return None  # the verdict is on its way: the transport closes once it is sent

    def finish(self, ok: bool, detail: str) -> None:
        if self.done:
            return
        self.done = True
        if self.file is not None:
            self.file.close()
            self.file = None
        if ok:
            assert self.part is not None and self.final is not None
            if not self.overwrite and os.path.lexists(self.final):
                # Another transfer of the same name finished while ours was
                # on the wire. (One thread: nothing else in this process can
                # create the file between this check and the rename.)
                ok, detail = False, self.refusal()
            else:
                try:
                    os.replace(self.part, self.final)  # atomic: never a half-written file
                except OSError as exc:
                    ok, detail = False, f"cannot save the file: {exc.strerror}"
        if ok:
            assert self.final is not None
            self.stats["ok"] += 1
            log.info("%s: %s OK (%d bytes, sha256 %s)", _fmt(self.peer), self.final.name,
                     self.received, detail)
            print(f"received {self.final.name} ({self.received} bytes) OK", flush=True)
            reply = f"OK {detail}"
        else:
            self.discard()
            self.stats["fail"] += 1
            log.warning("%s: FAIL: %s", _fmt(self.peer), detail)
            print(f"transfer from {_fmt(self.peer)} FAILED: {detail}", flush=True)
            reply = f"FAIL {detail}"
        self.transport.write(reply.encode() + b"\r\n")
        if self.got_eof:
            self.transport.close()  # after the reply is sent
        else:
            # A refusal can come early (a name that exists, a bad header):
            # the sender is still sending. Closing with its bytes unread
            # would make our kernel reset the connection, and the reset can
            # destroy the reply before the sender reads it. So half-close
            # (the reply, then FIN) and read on, discarding (buffer_updated),
            # until the sender hangs up; then eof_received() lets us close.
            self.transport.write_eof()

    def refusal(self) -> str:
        assert self.final is not None
        return (f"{self.final.name} exists already; the receiver replaces files "
                "only with --overwrite")

    def discard(self) -> None:
        if self.part is not None:
            try:
                os.unlink(self.part)
            except FileNotFoundError:
                pass

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        if not self.done:  # reset, or the reactor is closing
            self.done = True
            if self.file is not None:
                self.file.close()
                self.file = None
            self.discard()
            log.warning("%s: connection lost mid-transfer (%s)", _fmt(self.peer), exc)


def receive(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"{PROG} receive: cannot create {directory}: {why(exc)}", file=sys.stderr)
        return 2
    stats = {"ok": 0, "fail": 0}
    with Reactor() as reactor, traced(reactor, args):
        listener = cli.listen_or_explain(f"{PROG} receive", args.host, args.port, lambda: reactor.listen_tcp(
            lambda: Receive(directory, stats, args.overwrite), args.host, args.port))
        if listener is None:
            return 2
        log.info("saving files in %s%s", directory.resolve(),
                 " (replacing any of the same name)" if args.overwrite else "")
        cli.serve(reactor, listener.address)
        log.info("stopping: %d file(s) received, %d failed", stats["ok"], stats["fail"])
        listener.close()
    return 0


# -- sending ------------------------------------------------------------------

class Send(LineProtocol):
    """Stream one file, then wait for the receiver's one-line verdict."""

    def __init__(self, reactor: Reactor, file: BinaryIO, header: dict[str, Any]) -> None:
        self.reactor = reactor
        self.file = file
        self.header = header
        self.paused = False
        self.pauses = 0
        self.scheduled = False  # a _pump is queued
        self.all_sent = False
        self.reply: Optional[str] = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)  # LineProtocol sets up its framer
        header = json.dumps(self.header).encode()
        transport.write(LengthPrefixFramer(MAX_HEADER).encode(header))
        self.pump()

    def pump(self) -> None:
        """Send a few chunks, then give the loop back (and come back later)."""
        self.scheduled = False
        for _ in range(CHUNKS_PER_TURN):
            if self.paused or self.all_sent or self.transport.is_closing():
                return  # resume_writing() calls pump() again
            chunk = self.file.read(CHUNK_SIZE)
            if not chunk:
                self.all_sent = True
                self.transport.write_eof()  # "that was all", then wait for the verdict
                log.debug("all sent; paused %d time(s)", self.pauses)
                return
            self.transport.write(chunk)  # may call pause_writing() right away
        # Still not paused: more next turn. Not a plain loop to the end of
        # the file, so other callbacks (signals, timers) get their turn.
        self.schedule()

    def schedule(self) -> None:
        if not self.scheduled:
            self.scheduled = True
            self.reactor.call_soon(self.pump)

    def pause_writing(self) -> None:
        self.paused = True
        self.pauses += 1

    def resume_writing(self) -> None:
        self.paused = False
        self.schedule()

    def line_received(self, line: bytes) -> None:
        if self.reply is None:
            self.reply = line.decode("utf-8", "replace")
            self.transport.close()

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        if exc is not None:
            log.warning("connection lost: %s", exc)
        self.reactor.stop()


def send(args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        size = path.stat().st_size
        sha = args.announce_sha256 or file_sha256(path)
        file = open(path, "rb")
    except OSError as exc:
        print(f"{PROG} send: cannot read {path}: {why(exc)}", file=sys.stderr)
        return 1
    header = {"name": args.name or path.name, "size": size, "sha256": sha}
    with file, Reactor() as reactor, traced(reactor, args):
        protocol = Send(reactor, file, header)
        connector = reactor.connect_tcp(lambda: protocol, args.host, args.port,
                                        timeout=args.timeout)

        def connected(connector: Any) -> None:
            exc = connector.exception
            if exc is not None:
                reason = why(exc) if isinstance(exc, OSError) else exc
                print(f"{PROG} send: cannot connect to {args.host}:{args.port}: {reason}",
                      file=sys.stderr)
                reactor.stop()

        connector.add_done_callback(connected)
        for sig in (signal.SIGINT, signal.SIGTERM):
            reactor.add_signal_handler(sig, reactor.stop)
        timer = reactor.call_later(args.timeout, reactor.stop)
        reactor.run()
        timer.cancel()
    reply = protocol.reply
    if reply is None:
        if connector.exception is None:  # else: said above
            print(f"{PROG} send: no verdict from the receiver for {path.name}", file=sys.stderr)
        return 1
    print(f"sent {path.name} ({size} bytes, sha256 {sha}); paused {protocol.pauses} time(s); "
          f"receiver: {reply}", flush=True)
    return 0 if reply.startswith("OK ") else 1


# -- the command line ---------------------------------------------------------

def _fmt(address: Any) -> str:
    if isinstance(address, tuple):
        return f"{address[0]}:{address[1]}"
    return str(address)


def main(argv: Optional[list[str]] = None) -> int:
    parser, rx, tx = cli.receive_send_parser(PROG, __doc__, "accept files and save them", "send one file")
    rx.add_argument("--port", type=cli.port, default=9000,
                    help="port to listen on; 0 picks a free one (default: %(default)s)")
    rx.add_argument("--dir", default=".", help="where to save files (default: the current one)")
    rx.add_argument("--overwrite", action="store_true",
                    help="replace a file of the same name (default: refuse the transfer)")
    add_trace_options(rx)
    rx.set_defaults(run=receive)

    tx.add_argument("file", help="the file to send")
    tx.add_argument("--host", default="127.0.0.1", help="receiver address (default: %(default)s)")
    tx.add_argument("--port", type=cli.port, default=9000, help="receiver port (default: %(default)s)")
    tx.add_argument("--name", help="name to save it under (default: the file's own name)")
    tx.add_argument("--timeout", type=float, default=300.0,
                    help="give up after this many seconds (default: %(default)s)")
    tx.add_argument("--announce-sha256", metavar="HEX",
                    help="announce this SHA-256 instead of the file's, to see the receiver "
                         "refuse a corrupted transfer")
    add_trace_options(tx)
    tx.set_defaults(run=send)

    return cli.run_subcommand(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
