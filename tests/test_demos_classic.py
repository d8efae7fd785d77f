"""The classic demos (echo, UDP pair, proxy, file transfer) as a user runs them.

(Also what every demo here and the greeting pair share: ``--help``, and
one clear line and exit status 2 when the port is taken.)

Each demo runs as a subprocess on a free loopback port (``--port 0``, then
the ``listening on HOST:PORT`` line it prints) and is driven by real sockets
from here. No sleep is used for synchronisation: socket timeouts and bounded
loops with deadlines. Every subprocess is killed (if still running) and
waited for, and every pipe, file and socket closed, on every path.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Iterator, Optional

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEADLINE = 30.0  # seconds; generous for a loaded CI machine, never reached when all is well
MiB = 1024 * 1024


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Demo:
    """A running demo: its process, its announced address, and its stderr."""

    def __init__(self, proc: subprocess.Popen, host: str, port: int, stderr: IO[bytes]) -> None:
        self.proc = proc
        self.host = host
        self.port = port
        self._stderr = stderr

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def stderr_text(self) -> str:
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        """Signal the demo, wait for it; return its exit status and the rest of its stdout."""
        self.proc.send_signal(sig)
        out, _ = self.proc.communicate(timeout=DEADLINE)
        return self.proc.returncode, out.decode("utf-8", "replace")


def _read_line(stream: IO[bytes], deadline: float) -> bytes:
    """One line from a child's stdout pipe, or b"" at the deadline or at EOF."""
    with selectors.DefaultSelector() as sel:
        sel.register(stream, selectors.EVENT_READ)
        if not sel.select(max(0.0, deadline - time.monotonic())):
            return b""
    return stream.readline()  # the demos print the whole line at once


@contextlib.contextmanager
def run_demo(tmp_path: Path, module: str, *args: str) -> Iterator[Demo]:
    """Start ``python -m demos.<module> args...`` and wait for its ``listening on`` line.

    stderr goes to a file, not a pipe: a chatty child (``-v``) must never
    block on a full pipe that nobody reads.
    """
    with open(tmp_path / f"{module}-{os.urandom(4).hex()}.stderr", "w+b") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", f"demos.{module}", *args],
                                cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=stderr)
        try:
            line = _read_line(proc.stdout, time.monotonic() + DEADLINE).decode()
            if not line.startswith("listening on "):
                proc.kill()
                proc.wait(timeout=DEADLINE)
                stderr.seek(0)
                pytest.fail(f"{module} did not start: {line!r}\n{stderr.read().decode()}")
            host, port = line.split()[-1].rsplit(":", 1)
            yield Demo(proc, host, int(port), stderr)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=DEADLINE)  # reaps it and closes the stdout pipe


def run_client(*args: str, timeout: float = DEADLINE) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=_env(),
                          capture_output=True, timeout=timeout)


def recv_all(sock: socket.socket, limit: int) -> bytes:
    """Read until EOF (the socket's timeout bounds each wait); fail past *limit* bytes."""
    chunks = []
    total = 0
    while chunk := sock.recv(256 * 1024):
        chunks.append(chunk)
        total += len(chunk)
        assert total <= limit, f"more than {limit} bytes"
    return b"".join(chunks)


class Sender(threading.Thread):
    """Send *data* on *sock* then half-close, in a thread (the main thread reads meanwhile)."""

    def __init__(self, sock: socket.socket, data: bytes) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.data = data
        self.error: Optional[BaseException] = None

    def run(self) -> None:
        try:
            self.sock.sendall(self.data)
            self.sock.shutdown(socket.SHUT_WR)
        except BaseException as exc:  # reported by finish()
            self.error = exc

    def finish(self) -> None:
        self.join(DEADLINE)
        assert not self.is_alive(), "the sender thread is stuck"
        if self.error is not None:
            raise self.error


def vm_hwm_kib(pid: int) -> Optional[int]:
    """The process's peak resident set size in KiB, from /proc; None without /proc (not Linux)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return None


def check_growth(what: str, baseline: Optional[int], peak: Optional[int], limit_mib: float) -> None:
    """Assert that a process's peak RSS grew by less than *limit_mib* (where it can be measured)."""
    if baseline is None or peak is None:
        return  # no /proc here: the memory bound is checked on Linux only
    growth_mib = (peak - baseline) / 1024
    print(f"{what}: VmHWM baseline {baseline} KiB, peak {peak} KiB, growth {growth_mib:.1f} MiB")
    assert growth_mib < limit_mib, f"{what}: peak memory grew by {growth_mib:.1f} MiB"


# -- every demo has a --help, and refuses a port in use in one line -------------

@pytest.mark.parametrize("argv", [
    ["demos.greeting_server", "--help"],
    ["demos.greeting_client", "--help"],
    ["demos.echo_server", "--help"],
    ["demos.udp_pair", "--help"],
    ["demos.udp_pair", "receive", "--help"],
    ["demos.udp_pair", "send", "--help"],
    ["demos.proxy", "--help"],
    ["demos.file_transfer", "--help"],
    ["demos.file_transfer", "receive", "--help"],
    ["demos.file_transfer", "send", "--help"],
], ids=" ".join)
def test_demo_help(argv):
    result = run_client(*argv)
    assert result.returncode == 0, result.stderr
    # The usage line says how to run it: "python -m demos.x [sub]", not "x.py".
    usage = "usage: python -m " + " ".join(argv[:-1]) + " "
    assert result.stdout.decode().startswith(usage), result.stdout


@contextlib.contextmanager
def port_in_use(kind: str) -> Iterator[int]:
    """A loopback port number taken: by a listening TCP socket, or for UDP only."""
    if kind == "tcp":
        with socket.create_server(("127.0.0.1", 0)) as sock:
            yield sock.getsockname()[1]
        return
    # UDP taken, TCP free: a TCP port the kernel just picked (bound, never
    # listening, so closing it leaves nothing behind), then UDP on it.
    for _ in range(10):
        with socket.socket() as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            udp.bind(("127.0.0.1", port))
        except OSError:
            udp.close()
            continue
        with udp:
            yield port
        return
    pytest.fail("no port free for both TCP and UDP")


IN_USE = os.strerror(errno.EADDRINUSE)


@pytest.mark.parametrize("kind, argv, expected", [
    ("tcp", ["demos.greeting_server", "--port", "{port}"],
     "python -m demos.greeting_server: cannot listen on 127.0.0.1:{port}: {reason}"),
    ("tcp", ["demos.echo_server", "--port", "{port}"],
     "python -m demos.echo_server: cannot listen on 127.0.0.1:{port}: {reason}"),
    ("udp", ["demos.echo_server", "--port", "{port}"],
     "python -m demos.echo_server: cannot listen on 127.0.0.1:{port} for udp: {reason} "
     "(--no-udp serves tcp only)"),
    ("tcp", ["demos.proxy", "--listen-port", "{port}", "--target-port", "9"],
     "python -m demos.proxy: cannot listen on 127.0.0.1:{port}: {reason}"),
    ("tcp", ["demos.file_transfer", "receive", "--port", "{port}", "--dir", "{dir}"],
     "python -m demos.file_transfer receive: cannot listen on 127.0.0.1:{port}: {reason}"),
    ("udp", ["demos.udp_pair", "receive", "--port", "{port}"],
     "python -m demos.udp_pair receive: cannot bind 127.0.0.1:{port}: {reason}"),
], ids=["greeting_server", "echo_server-tcp", "echo_server-udp", "proxy", "file_transfer",
        "udp_pair"])
def test_demo_port_in_use_is_one_line_and_status_2(tmp_path, kind, argv, expected):
    with port_in_use(kind) as port:
        result = run_client(*(arg.format(port=port, dir=tmp_path) for arg in argv))
    stderr = result.stderr.decode()
    assert "Traceback" not in stderr
    # Exactly one line, naming the address once and the reason once.
    assert stderr == expected.format(port=port, reason=IN_USE) + "\n"
    assert result.stdout == b""  # never announced "listening on"
    assert result.returncode == 2


# -- echo ----------------------------------------------------------------------

def test_echo_tcp_round_trip_of_1mb_and_udp(tmp_path):
    payload = os.urandom(MiB)
    with run_demo(tmp_path, "echo_server", "--port", "0") as demo:
        # TCP: one thread sends 1 MiB and half-closes while we read the echo:
        # a single thread doing sendall() first would deadlock against the
        # server's backpressure once the buffers on both sides are full.
        with socket.create_connection(demo.address, timeout=DEADLINE) as sock:
            sender = Sender(sock, payload)
            sender.start()
            echoed = recv_all(sock, len(payload))
            sender.finish()
        assert len(echoed) == len(payload)
        assert echoed == payload

        # UDP on the same port number: one datagram, one reply, in turn.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.settimeout(DEADLINE)
            udp.connect(demo.address)
            for i in range(5):
                datagram = b"datagram %d " % i + os.urandom(100 * i)
                udp.send(datagram)
                assert udp.recv(65536) == datagram

        status, _ = demo.stop(signal.SIGINT)
        assert status == 0
        assert "Traceback" not in demo.stderr_text()


def test_echo_no_udp(tmp_path):
    with run_demo(tmp_path, "echo_server", "--port", "0", "--no-udp") as demo:
        with socket.create_connection(demo.address, timeout=DEADLINE) as sock:
            sock.sendall(b"ping")
            sock.shutdown(socket.SHUT_WR)
            assert recv_all(sock, 4) == b"ping"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.settimeout(DEADLINE)
            udp.connect(demo.address)
            udp.send(b"anyone?")  # nobody there: ICMP port unreachable
            with pytest.raises(ConnectionRefusedError):
                udp.recv(100)
        status, _ = demo.stop()
    assert status == 0


def test_echo_backpressure_with_a_slow_reader(tmp_path):
    """12 MiB echoed to a client that reads slowly: the server pauses reading
    instead of buffering the echoes."""
    payload = os.urandom(12 * MiB)
    with run_demo(tmp_path, "echo_server", "--port", "0", "--no-udp", "-v") as demo:
        baseline = vm_hwm_kib(demo.proc.pid)
        with small_rcvbuf_socket() as sock:
            sock.settimeout(DEADLINE)
            sock.connect(demo.address)
            sender = Sender(sock, payload)
            sender.start()
            received, sha256 = read_slowly(sock)
            sender.finish()
        peak = vm_hwm_kib(demo.proc.pid)
        status, _ = demo.stop()
        log = demo.stderr_text()
    assert (received, sha256) == (len(payload), hashlib.sha256(payload).hexdigest())
    assert status == 0
    assert "write buffer full, pausing reading" in log
    assert "write buffer drained, resuming reading" in log
    # ~0.4 MiB measured; ~8 MiB for a server that ignores pause_writing().
    check_growth("echo server", baseline, peak, 3)


# -- UDP sender and receiver ---------------------------------------------------

def test_udp_sender_to_receiver(tmp_path):
    count = 200
    with run_demo(tmp_path, "udp_pair", "receive", "--port", "0", "--count", str(count),
                  "--quiet", "--idle-timeout", "10") as receiver:
        result = run_client("demos.udp_pair", "send", "--host", receiver.host,
                            "--port", str(receiver.port), "--count", str(count))
        assert result.returncode == 0, result.stderr
        summary = result.stdout.decode()
        assert summary.startswith(f"sent {count}/{count} datagrams"), summary
        assert "dropped 0; errors 0" in summary
        # The receiver exits by itself after --count datagrams.
        out, _ = receiver.proc.communicate(timeout=DEADLINE)
    assert receiver.proc.returncode == 0, receiver.stderr_text()
    assert out.decode().strip().splitlines()[-1] == (
        f"received {count} datagrams ({count * 100} bytes) from 1 sender(s)")


def test_udp_sender_honours_pause_writing():
    """In-process: while paused, the sender sends nothing; resumed, it finishes."""
    from demos.udp_pair import Sender as UdpSender
    from reactor import Reactor

    class FakeTransport:
        def __init__(self) -> None:
            self.sent: list[bytes] = []
            self.closed = False

        def sendto(self, data: bytes, addr: object = None) -> None:
            assert not self.closed
            self.sent.append(data)
            if len(self.sent) == 5:
                protocol.pause_writing()  # as a real transport does, from inside sendto()

        def close(self) -> None:
            self.closed = True

    with Reactor() as reactor:
        protocol = UdpSender(reactor, total=30, size=20, burst=10, interval=0.0)
        transport = FakeTransport()
        protocol.connection_made(transport)
        assert len(transport.sent) == 5 and protocol.paused
        for _ in range(5):  # paused: no timer, nothing more however long we wait
            reactor.run_once(0)
        assert len(transport.sent) == 5
        protocol.resume_writing()
        deadline = time.monotonic() + DEADLINE
        while not transport.closed and time.monotonic() < deadline:
            reactor.run_once(0.01)
    assert transport.closed
    assert [int(d.split()[0]) for d in transport.sent] == list(range(1, 31))
    assert protocol.pauses == 1


# -- proxy -----------------------------------------------------------------------

def read_slowly(sock: socket.socket, chunk: int = 16 * 1024, pause: float = 0.001) -> tuple[int, str]:
    """Read to EOF in small chunks, pausing after each: a slow consumer.

    The sleep simulates slowness; it is not synchronisation (the socket's
    timeout bounds every wait). Returns the byte count and the SHA-256.
    """
    digest = hashlib.sha256()
    total = 0
    while data := sock.recv(chunk):
        digest.update(data)
        total += len(data)
        time.sleep(pause)
    return total, digest.hexdigest()


def small_rcvbuf_socket() -> socket.socket:
    """A TCP socket with a small, fixed receive buffer (no autotuning), so that
    a slow reader's backlog shows up in the peer's memory, not in the kernel's."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    return sock


class Target(threading.Thread):
    """A plain socket server in a thread: accept one connection, ``serve()`` it, close.

    An exception in the thread is kept and raised again by ``finish()``.
    """

    def __init__(self, listener: socket.socket) -> None:
        super().__init__(daemon=True)
        self.listener = listener
        self.listener.settimeout(DEADLINE)
        self.port = self.listener.getsockname()[1]
        self.error: Optional[BaseException] = None

    def run(self) -> None:
        try:
            conn, _ = self.listener.accept()
            with conn:
                conn.settimeout(DEADLINE)
                self.serve(conn)
        except BaseException as exc:  # reported by finish()
            self.error = exc

    def serve(self, conn: socket.socket) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def finish(self) -> None:
        self.join(DEADLINE)
        assert not self.is_alive(), "the target thread is stuck"
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        self.listener.close()


class SlowTarget(Target):
    """Reads its connection slowly to EOF, then replies ``<bytes received> <sha256>``,
    so the test checks byte exactness and the reverse direction (and the
    half-close) in one go."""

    def __init__(self) -> None:
        listener = small_rcvbuf_socket()  # accepted sockets inherit it
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        super().__init__(listener)

    def serve(self, conn: socket.socket) -> None:
        received, sha256 = read_slowly(conn)
        conn.sendall(b"%d %s" % (received, sha256.encode()))


def test_proxy_10mb_to_slow_target_in_bounded_memory(tmp_path):
    payload = os.urandom(10 * MiB)
    target = SlowTarget()
    try:
        target.start()
        with run_demo(tmp_path, "proxy", "--listen-port", "0", "--target-port", str(target.port),
                      "-v") as proxy:
            baseline = vm_hwm_kib(proxy.proc.pid)
            with socket.create_connection(proxy.address, timeout=DEADLINE) as sock:
                sender = Sender(sock, payload)
                sender.start()
                reply = recv_all(sock, 1000)  # EOF: the target's close, passed on by the proxy
                sender.finish()
            target.finish()
            peak = vm_hwm_kib(proxy.proc.pid)
            status, _ = proxy.stop()
            log = proxy.stderr_text()
    finally:
        target.close()
    assert reply == b"%d %s" % (len(payload), hashlib.sha256(payload).hexdigest().encode())
    assert status == 0, log
    # Backpressure happened (the target side paused the client side)...
    assert "write buffer over the high-water mark; pausing #1 client" in log
    # ...and the proxy did not hold the 10 MiB: its peak RSS grew by far less.
    # Measured on Linux: ~0.3 MiB with backpressure; ~6 MiB with a proxy whose
    # pause_writing() does nothing (the kernel's socket buffers absorb the
    # other ~4 MiB), so a looser bound such as 8 MiB would not catch that.
    check_growth("proxy", baseline, peak, 3)


class FastTarget(Target):
    """Reads the request to EOF, then sends *payload* as fast as the proxy takes it."""

    def __init__(self, payload: bytes) -> None:
        super().__init__(socket.create_server(("127.0.0.1", 0), backlog=1))
        self.payload = payload
        self.request: Optional[bytes] = None

    def serve(self, conn: socket.socket) -> None:
        self.request = recv_all(conn, 1000)  # EOF: the client's half-close, passed on
        conn.sendall(self.payload)


def test_proxy_10mb_to_slow_client_in_bounded_memory(tmp_path):
    """The reverse direction: a short request, then 10 MiB from a fast target
    to a client that reads slowly. The client side pauses the target side."""
    payload = os.urandom(10 * MiB)
    target = FastTarget(payload)
    try:
        target.start()
        with run_demo(tmp_path, "proxy", "--listen-port", "0", "--target-port", str(target.port),
                      "-v") as proxy:
            baseline = vm_hwm_kib(proxy.proc.pid)
            with small_rcvbuf_socket() as sock:
                sock.settimeout(DEADLINE)
                sock.connect(proxy.address)
                sock.sendall(b"GET /big\r\n")
                sock.shutdown(socket.SHUT_WR)
                received, sha256 = read_slowly(sock)  # EOF: the target's close, passed on
            target.finish()
            peak = vm_hwm_kib(proxy.proc.pid)
            status, _ = proxy.stop()
            log = proxy.stderr_text()
    finally:
        target.close()
    assert target.request == b"GET /big\r\n"
    assert (received, sha256) == (len(payload), hashlib.sha256(payload).hexdigest())
    assert status == 0, log
    assert "#1 client: write buffer over the high-water mark; pausing #1 target" in log
    assert "#1 client: write buffer drained; resuming #1 target" in log
    check_growth("proxy", baseline, peak, 3)


def test_proxy_both_directions_with_half_close(tmp_path):
    """Through the proxy to the echo server: 1 MiB each way, EOF passed on."""
    payload = os.urandom(MiB)
    with run_demo(tmp_path, "echo_server", "--port", "0", "--no-udp") as echo, \
            run_demo(tmp_path, "proxy", "--listen-port", "0",
                     "--target-port", str(echo.port)) as proxy:
        with socket.create_connection(proxy.address, timeout=DEADLINE) as sock:
            sender = Sender(sock, payload)
            sender.start()
            echoed = recv_all(sock, len(payload))
            sender.finish()
        assert echoed == payload
        assert proxy.stop()[0] == 0
        assert echo.stop()[0] == 0


def test_proxy_closes_client_when_target_refuses(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
        with run_demo(tmp_path, "proxy", "--listen-port", "0",
                      "--target-port", str(dead_port)) as proxy:
            with socket.create_connection(proxy.address, timeout=DEADLINE) as sock:
                # Hung up on, cleanly. (Had we sent bytes first, they would be
                # unread in the proxy's socket, and the kernel would reset
                # the connection instead of closing it.)
                assert recv_all(sock, 0) == b""
            status, _ = proxy.stop()
            log = proxy.stderr_text()
    assert status == 0
    assert f"cannot connect to 127.0.0.1:{dead_port}" in log
    assert "closing the client" in log


# -- file transfer ---------------------------------------------------------------

# Runs ``demos.file_transfer`` then prints its own peak RSS. VmHWM, not
# getrusage()'s ru_maxrss: the latter survives execve() and so may report the
# peak of the parent (pytest) that forked (or vforked) us.
SENDER_WITH_MAXRSS = (
    "import sys\n"
    "from demos.file_transfer import main\n"
    "status = main(sys.argv[1:])\n"
    "try:\n"
    "    hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0].split()[1]\n"
    "except OSError:\n"
    "    hwm = -1\n"
    "print('maxrss_kib', hwm, file=sys.stderr)\n"
    "sys.exit(status)\n"
)


def test_file_transfer_50mb(tmp_path):
    source = tmp_path / "big.bin"
    with open(source, "wb") as f:
        for _ in range(50):
            f.write(os.urandom(MiB))
    incoming = tmp_path / "incoming"
    with run_demo(tmp_path, "file_transfer", "receive", "--port", "0",
                  "--dir", str(incoming)) as receiver:
        baseline = vm_hwm_kib(receiver.proc.pid)
        # The sender runs under a wrapper that reports its own peak RSS.
        result = subprocess.run(
            [sys.executable, "-c", SENDER_WITH_MAXRSS, "send", "--host", receiver.host,
             "--port", str(receiver.port), str(source)],
            cwd=ROOT, env=_env(), capture_output=True, timeout=DEADLINE)
        receiver_peak = vm_hwm_kib(receiver.proc.pid)
        status, out = receiver.stop()
    assert result.returncode == 0, result.stderr
    expected = hashlib.sha256(source.read_bytes()).hexdigest()
    assert result.stdout.decode().rstrip().endswith(f"receiver: OK {expected}")
    assert status == 0
    # Bounded memory on both sides: neither held the 50 MiB file.
    # Measured: ~22 MiB for the sender (the interpreter's own ~18 MiB plus
    # buffers), +0.3 MiB for the receiver. Holding the file would cost 50 MiB.
    check_growth("file receiver", baseline, receiver_peak, 8)
    sender_kib = int(result.stderr.decode().split("maxrss_kib ")[-1].split()[0])
    if sender_kib >= 0:
        print(f"file sender: VmHWM {sender_kib / 1024:.1f} MiB")
        assert sender_kib / 1024 < 40, f"the sender's peak RSS was {sender_kib / 1024:.1f} MiB"
    assert "received big.bin (52428800 bytes) OK" in out
    received = incoming / "big.bin"
    assert received.stat().st_size == source.stat().st_size
    assert hashlib.sha256(received.read_bytes()).hexdigest() == expected
    assert received.read_bytes() == source.read_bytes()
    assert sorted(p.name for p in incoming.iterdir()) == ["big.bin"]  # no .part left over


def test_file_transfer_wrong_hash_is_refused(tmp_path):
    source = tmp_path / "small.bin"
    source.write_bytes(os.urandom(300_000))
    incoming = tmp_path / "incoming"
    with run_demo(tmp_path, "file_transfer", "receive", "--port", "0",
                  "--dir", str(incoming)) as receiver:
        # 1. The sender announcing a hash that does not match: exit status 1.
        result = run_client("demos.file_transfer", "send", "--host", receiver.host,
                            "--port", str(receiver.port), str(source),
                            "--announce-sha256", "0" * 64)
        assert result.returncode == 1, result.stderr
        assert "receiver: FAIL sha256 mismatch" in result.stdout.decode()

        # 2. The wire format by hand: a header whose hash is wrong for the bytes.
        data = b"not what the header promised"
        header = json.dumps({"name": "raw.bin", "size": len(data),
                             "sha256": hashlib.sha256(b"something else").hexdigest()}).encode()
        with socket.create_connection(receiver.address, timeout=DEADLINE) as sock:
            sock.sendall(len(header).to_bytes(4, "big") + header + data)
            sock.shutdown(socket.SHUT_WR)
            reply = recv_all(sock, 1000)
        assert reply.startswith(b"FAIL sha256 mismatch"), reply
        assert reply.endswith(b"\r\n")

        # 3. Truncated: the sender half-closes before the announced size.
        header = json.dumps({"name": "short.bin", "size": 1000, "sha256": "0" * 64}).encode()
        with socket.create_connection(receiver.address, timeout=DEADLINE) as sock:
            sock.sendall(len(header).to_bytes(4, "big") + header + b"x" * 10)
            sock.shutdown(socket.SHUT_WR)
            reply = recv_all(sock, 1000)
        assert reply == b"FAIL truncated: 10 of 1000 bytes\r\n"
        status, out = receiver.stop(signal.SIGINT)
    assert status == 0
    assert out.count("FAILED") == 3
    assert not incoming.exists() or list(incoming.iterdir()) == []  # nothing saved, nothing left


def wire_header(name: str, data: bytes) -> bytes:
    """The file_transfer header for *data*, framed: 4-byte length, then JSON."""
    header = json.dumps({"name": name, "size": len(data),
                         "sha256": hashlib.sha256(data).hexdigest()}).encode()
    return len(header).to_bytes(4, "big") + header


def wait_for(condition, what: str) -> None:
    """Poll *condition()* until it holds; fail at the deadline."""
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_file_transfer_refuses_to_overwrite_unless_asked(tmp_path):
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    existing = incoming / "same.bin"
    existing.write_bytes(b"the original\n")
    # Larger than the socket buffers: the refusal, at the header, reaches the
    # sender while it is still sending (and must not be lost to a reset).
    source = tmp_path / "new.bin"
    with open(source, "wb") as f:
        for _ in range(8):
            f.write(os.urandom(MiB))
    refusal = "same.bin exists already; the receiver replaces files only with --overwrite"

    with run_demo(tmp_path, "file_transfer", "receive", "--port", "0",
                  "--dir", str(incoming)) as receiver:
        # 1. A sender with a name that exists: refused, with the reason.
        result = run_client("demos.file_transfer", "send", "--host", receiver.host,
                            "--port", str(receiver.port), "--name", "same.bin", str(source))
        assert result.returncode == 1, result.stderr
        assert result.stdout.decode().rstrip().endswith(f"receiver: FAIL {refusal}")

        # 2. Two transfers of one new name at once: the one that finishes
        # second is refused, although the name was free when it started.
        first, second = b"first to finish", b"second to finish"
        with socket.create_connection(receiver.address, timeout=DEADLINE) as late:
            late.sendall(wire_header("dup.bin", second) + second[:5])
            wait_for(lambda: "receiving dup.bin" in receiver.stderr_text(), "the late header")
            with socket.create_connection(receiver.address, timeout=DEADLINE) as early:
                early.sendall(wire_header("dup.bin", first) + first)
                early.shutdown(socket.SHUT_WR)
                assert recv_all(early, 1000).startswith(b"OK ")
            late.sendall(second[5:])
            late.shutdown(socket.SHUT_WR)
            assert recv_all(late, 1000) == (
                b"FAIL dup.bin exists already; the receiver replaces files only with --overwrite"
                b"\r\n")
        status, out = receiver.stop()
        log = receiver.stderr_text()
    assert status == 0
    assert f"FAIL: {refusal}" in log  # the receiver's log says why, too
    assert f"FAILED: {refusal}" in out
    assert existing.read_bytes() == b"the original\n"
    assert (incoming / "dup.bin").read_bytes() == first
    assert sorted(p.name for p in incoming.iterdir()) == ["dup.bin", "same.bin"]  # no .part

    # 3. With --overwrite, the same transfer replaces the file.
    with run_demo(tmp_path, "file_transfer", "receive", "--port", "0", "--overwrite",
                  "--dir", str(incoming)) as receiver:
        result = run_client("demos.file_transfer", "send", "--host", receiver.host,
                            "--port", str(receiver.port), "--name", "same.bin", str(source))
        status, out = receiver.stop()
    assert result.returncode == 0, result.stderr
    expected = hashlib.sha256(source.read_bytes()).hexdigest()
    assert result.stdout.decode().rstrip().endswith(f"receiver: OK {expected}")
    assert status == 0
    assert existing.read_bytes() == source.read_bytes()
    assert sorted(p.name for p in incoming.iterdir()) == ["dup.bin", "same.bin"]
