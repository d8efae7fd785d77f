"""The demos over TLS, as programs: the chat server serving nc and TLS clients in the
same rooms (openssl s_client among them), chat_client --tls, echo_server and proxy
with --tls-cert, and demos.make_cert."""

from __future__ import annotations

import os
import select
import socket
import ssl
import subprocess
import sys
import time

import pytest

from .test_chat import DEADLINE, ROOT, Client, _env, read_line, server_factory  # noqa: F401 (fixture)
from .test_tls import CA, CERT, client_context, require


@pytest.fixture
def pem(tmp_path):
    cert, key, ca = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    CERT.cert_chain_pems[0].write_to_path(str(cert))
    CERT.private_key_pem.write_to_path(str(key))
    CA.cert_pem.write_to_path(str(ca))
    return cert, key, ca


class TLSClient(Client):
    """test_chat's line client, over TLS."""

    def __init__(self, port: int) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        self.sock = client_context().wrap_socket(raw, server_hostname="localhost")
        self.buf = b""
        self.lines = []


def tls_port(server) -> int:
    return next(int(l.rsplit(":", 1)[1]) for l in server.startup if l.startswith("tls on "))


def test_chat_over_tls_and_plaintext_share_rooms(server_factory, pem):
    cert, key, _ = pem
    server = server_factory("--tls-cert", str(cert), "--tls-key", str(key), "--tls-port", "0")
    assert any("over TLS: python3 -m demos.chat_client --tls" in l for l in server.startup)
    plain = server.client("plain")
    secure = TLSClient(tls_port(server))
    server.clients.append(secure)
    secure.read_until("Choose a nickname:")
    secure.send("secure")
    secure.read_until("*** secure joined #lobby")
    plain.read_until("*** secure joined #lobby")
    secure.send("hello in the clear? no: encrypted")
    plain.read_until("<secure> hello in the clear? no: encrypted")
    plain.send("and back")
    secure.read_until("<plain> and back")
    secure.sock.close()
    plain.read_until(lambda line: line.startswith("*** secure quit"))
    code, err = server.stop()
    assert code == 0 and "Traceback" not in err


def test_openssl_s_client_chats_with_an_nc_user(server_factory, pem):
    openssl = require("openssl")
    cert, key, ca = pem
    server = server_factory("--tls-cert", str(cert), "--tls-key", str(key), "--tls-port", "0")
    plain = server.client("ncuser")
    proc = subprocess.Popen([openssl, "s_client", "-connect", f"127.0.0.1:{tls_port(server)}",
                             "-CAfile", str(ca), "-servername", "localhost", "-verify_return_error",
                             "-quiet"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, bufsize=0)
    try:
        proc.stdin.write(b"osc\r\n")
        plain.read_until("*** osc joined #lobby")
        proc.stdin.write(b"hi from openssl\r\n")
        plain.read_until("<osc> hi from openssl")
        plain.send("hi openssl")
        deadline = time.monotonic() + DEADLINE
        seen = b""
        while b"<ncuser> hi openssl" not in seen:
            assert time.monotonic() < deadline, seen
            if select.select([proc.stdout], [], [], 0.5)[0]:
                seen += os.read(proc.stdout.fileno(), 4096)
    finally:
        proc.kill()
        proc.communicate(timeout=DEADLINE)
    server.stop()


def test_chat_client_over_tls(server_factory, pem):
    cert, key, ca = pem
    server = server_factory("--tls-cert", str(cert), "--tls-key", str(key), "--tls-port", "0")
    watcher = server.client("watcher")
    client = subprocess.run(
        [sys.executable, "-m", "demos.chat_client", "--tls", "--cafile", str(ca), "--port",
         str(tls_port(server)), "--nick", "tlsbot", "--plain"],
        input=b"over tls via chat_client\n/quit\n", cwd=ROOT, env=_env(), capture_output=True,
        timeout=DEADLINE)
    watcher.read_until("<tlsbot> over tls via chat_client")
    assert client.returncode == 0, client.stderr
    server.stop()


def test_chat_server_tls_options_are_checked_at_start(pem, tmp_path):
    cert, key, _ = pem
    for args, message in [
        (["--tls-cert", str(cert)], "--tls-cert and --tls-key go together"),
        (["--tls-cert", str(tmp_path / "nope.pem"), "--tls-key", str(key)], "cannot read"),
        (["--tls-cert", str(key), "--tls-key", str(cert)], "not a PEM certificate chain and its key"),
        (["--irc-tls-port", "6697"], "--irc-tls-port needs --tls-cert"),
    ]:
        result = subprocess.run([sys.executable, "-m", "demos.chat_server", "--port", "0", *args],
                                cwd=ROOT, env=_env(), capture_output=True, timeout=DEADLINE)
        err = result.stderr.decode()
        assert result.returncode == 2 and err.count("\n") == 1 and message in err, err


def start_demo(*argv):
    proc = subprocess.Popen([sys.executable, "-m", *argv], cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, bufsize=0)
    line = read_line(proc)
    assert line.startswith("listening on "), line
    return proc, int(line.rsplit(":", 1)[1])


def stop(proc):
    proc.terminate()
    proc.wait(timeout=DEADLINE)
    proc.stdout.close()


def test_echo_server_and_proxy_over_tls(pem):
    cert, key, ca = pem
    echo, echo_port = start_demo("demos.echo_server", "--port", "0", "--no-udp",
                                 "--tls-cert", str(cert), "--tls-key", str(key))
    # The proxy terminates TLS from its clients and speaks TLS to the echo server.
    proxy, proxy_port = start_demo("demos.proxy", "--port", "0", "--target-port", str(echo_port),
                                   "--tls-cert", str(cert), "--tls-key", str(key),
                                   "--target-tls", "--cafile", str(ca))
    try:
        for port in (echo_port, proxy_port):
            with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as raw:
                with client_context().wrap_socket(raw, server_hostname="localhost") as tls:
                    tls.sendall(b"round trip")
                    got = b""
                    while len(got) < 10:
                        got += tls.recv(100)
                    assert got == b"round trip"
    finally:
        stop(proxy)
        stop(echo)


def test_make_cert_makes_a_certificate_a_client_trusts(tmp_path):
    require("openssl")
    result = subprocess.run([sys.executable, "-m", "demos.make_cert", "--dir", str(tmp_path)], cwd=ROOT,
                            env=_env(), capture_output=True, text=True, timeout=DEADLINE)
    assert result.returncode == 0, result.stderr
    assert "demos.chat_server --tls-cert" in result.stdout
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    client_ctx = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
    with socket.create_server(("127.0.0.1", 0)) as listener:
        raw = socket.create_connection(listener.getsockname())
        conn, _ = listener.accept()
        with raw, conn:
            import threading
            accepted = threading.Thread(target=lambda: server_ctx.wrap_socket(conn, server_side=True).close())
            accepted.start()
            with client_ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                assert tls.version()
            accepted.join(DEADLINE)
    again = subprocess.run([sys.executable, "-m", "demos.make_cert", "--dir", str(tmp_path)], cwd=ROOT,
                           env=_env(), capture_output=True, text=True, timeout=DEADLINE)
    assert again.returncode == 2 and "--force" in again.stderr
