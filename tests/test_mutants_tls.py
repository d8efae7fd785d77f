"""TLSEngine behaviours that mutation testing found unpinned (python -m tests.mutation).

Two engines back to back, as in test_tls.py: bytes move only when a test
moves them, so each case is exact and takes milliseconds.
"""

from __future__ import annotations

import ssl

import pytest

pytest.importorskip("trustme", reason="trustme is in the test extra: pip install -e '.[test]'")

from reactor.tls import HANDSHAKE_DONE, PEER_CLOSED, READ_CHUNK, TLSEngine, TLSState, _Marker  # noqa: E402

from .test_tls import client_context, engines, handshake, plaintext, pump  # noqa: E402


def test_the_markers_say_their_names():
    assert repr(HANDSHAKE_DONE) == "HANDSHAKE_DONE" and repr(PEER_CLOSED) == "PEER_CLOSED"
    assert repr(_Marker("ANY")) == "ANY"


def test_a_client_without_a_hostname_to_check_is_refused_with_the_fix():
    with pytest.raises(ValueError) as refused:
        TLSEngine(client_context(), server_side=False)
    assert str(refused.value) == ("server_hostname is needed to verify the server (or turn off "
                                  "check_hostname in the context)")


def test_plaintext_queued_before_the_handshake_is_counted_in_full():
    client, server = engines()
    client.send(b"early")
    client.send(b"")  # nothing to queue
    client.send(b" and more")
    assert client.pending_plaintext == 14 and repr(client) == "<TLSEngine handshaking pending=14B>"
    got = handshake(client, server)
    assert plaintext(got["server"]) == b"early and more"
    assert client.pending_plaintext == 0 and repr(client) == "<TLSEngine open pending=0B>"


def test_more_than_one_read_chunk_arrives_as_one_event_in_full():
    client, server = engines()
    handshake(client, server)
    data = bytes(range(256)) * (READ_CHUNK // 256 * 2 + 3)  # more than two read chunks
    client.send(data)
    events = server.receive(client.bytes_to_send())
    assert events == [data]


def test_the_last_data_and_close_notify_in_one_receive_both_arrive():
    client, server = engines()
    handshake(client, server)
    client.send(b"last words")
    client.close()
    assert server.receive(client.bytes_to_send()) == [b"last words", PEER_CLOSED]
    assert server.peer_closed


def test_send_after_close_is_refused_with_the_reason():
    client, server = engines()
    handshake(client, server)
    client.close()
    assert client.state is TLSState.CLOSING
    with pytest.raises(ssl.SSLError) as refused:
        client.send(b"too late")
    assert refused.value.args == ("the TLS connection is closing: cannot send",)


def test_close_before_the_handshake_drops_what_was_queued():
    client, server = engines()
    client.start()
    client.send(b"never sent")
    client.close()
    assert client.state is TLSState.CLOSED and client.pending_plaintext == 0
    assert repr(client) == "<TLSEngine closed pending=0B>"
    client.close()  # again: nothing more
    assert client.state is TLSState.CLOSED
    with pytest.raises(ssl.SSLError):
        client.send(b"x")


def test_a_full_close_exchange_leaves_both_closed():
    client, server = engines()
    handshake(client, server)
    client.close()
    assert PEER_CLOSED in pump(client, server)
    server.close()
    assert server.state is TLSState.CLOSED
    pump(server, client)
    assert client.state is TLSState.CLOSED
    assert client.bytes_to_send() == b"" and server.bytes_to_send() == b""


def test_peer_closed_is_a_bool_from_the_start():
    client, server = engines()
    assert client.peer_closed is False
    handshake(client, server)
    assert server.peer_closed is False and client.peer_closed is False


def test_the_peers_close_notify_does_not_close_our_side():
    # A half-close: the engine answers the peer's close_notify only when its
    # owner calls close(); until then it stays open and may still send, and
    # the peer, closing, still reads what comes.
    client, server = engines()
    handshake(client, server)
    client.close()
    assert pump(client, server) == [PEER_CLOSED]
    assert server.state is TLSState.OPEN and server.bytes_to_send() == b""
    server.send(b"the last reply")
    assert pump(server, client) == [b"the last reply"]
    assert client.state is TLSState.CLOSING
    server.close()
    assert server.state is TLSState.CLOSED
    assert pump(server, client) == [PEER_CLOSED] and client.state is TLSState.CLOSED


def test_a_client_closed_before_the_handshake_ignores_the_servers_answer():
    client, server = engines()
    client.start()
    server.receive(client.bytes_to_send())
    answer = server.bytes_to_send()
    client.close()
    assert client.receive(answer) == []
    assert client.bytes_to_send() == b""  # no Finished: the handshake is not carried on
    assert client.state is TLSState.CLOSED
