"""The web door as a program, with a WebSocket client nobody here wrote: the ``websockets`` library.

A websockets user, an nc user and an IRC user share a room on one chat
server (``python -m demos.chat_server --web-port 0 --irc-port 0``); the same
over TLS (wss, ``--web-tls-port``); and the web options' mistakes are one
line on stderr.
"""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import sys
import urllib.request

import pytest

from .test_chat import DEADLINE, ROOT, _env, server_factory  # noqa: F401 (a fixture)
from .test_chat_irc import barrier, irc
from .test_chat_web import need_module
from .test_tls_demos import pem  # noqa: F401 (a fixture)
from .test_tls import client_context


def web_port(server, label: str = "web") -> int:
    return next(int(l.rsplit(":", 1)[1]) for l in server.startup if l.startswith(f"{label} on "))


class WebUser:
    """A chat user on the ``websockets`` library's synchronous client."""

    def __init__(self, url: str, origin: str | None = None, context: ssl.SSLContext | None = None) -> None:
        need_module("websockets")
        from websockets.sync.client import connect
        self._connect = connect(url, origin=origin, ssl=context, proxy=None, open_timeout=DEADLINE)
        self.seen: list[dict] = []

    def __enter__(self) -> "WebUser":
        self.ws = self._connect.__enter__()  # websockets' connections are context managers
        return self

    def __exit__(self, *exc) -> None:
        self._connect.__exit__(*exc)

    def send(self, **message) -> None:
        self.ws.send(json.dumps(message))

    def expect(self, type_: str, **fields) -> dict:
        """Read messages until one of *type_* with *fields*; the ones before it are kept in ``seen``."""
        while True:
            message = json.loads(self.ws.recv(timeout=DEADLINE))
            self.seen.append(message)
            if message["type"] == type_ and all(message.get(k) == v for k, v in fields.items()):
                return message

    def login(self, nick: str) -> "WebUser":
        self.expect("hello")
        self.send(type="nick", nick=nick)
        self.expect("welcome", nick=nick)
        return self


def test_websockets_nc_and_irc_users_share_a_room(server_factory):
    server = server_factory("--irc-port", "0", "--web-port", "0")
    port = web_port(server)
    assert f"in a browser: http://127.0.0.1:{port}/" in server.startup
    nc = server.client("ncuser")
    nc.send("said before the others came")
    ircu = irc(server, "ircuser")
    ircu.send("JOIN #lobby")
    barrier(ircu)

    with WebUser(f"ws://127.0.0.1:{port}/chat", origin=f"http://127.0.0.1:{port}") as web:
        web_user_in_every_kind_of_room(web, nc, ircu)
    ircu.read_until(lambda l: l.startswith(":webby!") and "QUIT :closed the connection" in l)
    code, err = server.stop()
    assert code == 0 and "Traceback" not in err and "connect 127.0.0.1" in err


def web_user_in_every_kind_of_room(web, nc, ircu) -> None:
    web.login("webuser")
    assert web.expect("joined", room="lobby")["nick"] == "webuser"
    assert web.expect("names", room="lobby")["nicks"] == ["ncuser", "ircuser", "webuser"]
    history = web.expect("history", room="lobby")["lines"]
    assert [(l["nick"], l["text"]) for l in history] == [("ncuser", "said before the others came")]
    nc.read_until("*** webuser joined #lobby")
    ircu.read_until(lambda l: l.startswith(":webuser!") and l.endswith("JOIN #lobby"))

    web.send(type="say", room="lobby", text="hello from the web")  # to nc and IRC
    nc.read_until("<webuser> hello from the web")
    ircu.read_until(lambda l: l.endswith("PRIVMSG #lobby :hello from the web"))
    nc.send("hi web")  # from nc and IRC
    assert web.expect("said", nick="ncuser")["text"] == "hi web"
    ircu.send("PRIVMSG #lobby :hi from irc")
    assert web.expect("said", nick="ircuser")["text"] == "hi from irc"

    web.send(type="me", room="lobby", text="waves")  # /me
    assert web.expect("emote", nick="webuser")["text"] == "waves"
    nc.read_until("* webuser waves")
    ircu.read_until(lambda l: l.endswith("PRIVMSG #lobby :\x01ACTION waves\x01"))

    web.send(type="msg", to="ircuser", text="psst")  # private, both ways
    assert web.expect("private", echo=True)["to"] == "ircuser"
    ircu.read_until(lambda l: l.startswith(":webuser!") and l.endswith("PRIVMSG ircuser :psst"))
    ircu.send("PRIVMSG webuser :psst back")
    assert web.expect("private", echo=False)["from"] == "ircuser"

    web.send(type="who", room="lobby")  # the lists
    assert web.expect("names", on_join=False)["nicks"] == ["ncuser", "ircuser", "webuser"]
    web.send(type="rooms")
    assert web.expect("rooms")["rooms"] == [{"name": "lobby", "members": 3, "topic": ""}]
    web.send(type="msg", to="nobody", text="?")
    assert web.expect("error") == {"type": "error", "code": "no such nick", "text": "no such user: nobody",
                                   "arg": "nobody"}

    web.send(type="join", room="web-only")  # rooms: the web user is in two at once
    web.expect("joined", room="web-only")
    ircu.send("NICK ircy")  # renames
    assert web.expect("renamed", nick="ircuser")["new"] == "ircy"
    web.send(type="nick", nick="webby")
    nc.read_until("*** webuser is now known as webby")
    nc.send("/quit off to bed")  # quits
    assert web.expect("quit", nick="ncuser")["reason"] == "off to bed"


def test_a_page_on_another_site_cannot_open_the_chat_socket(server_factory):
    need_module("websockets")
    from websockets.exceptions import InvalidStatus
    server = server_factory("--web-port", "0")
    port = web_port(server)
    with pytest.raises(InvalidStatus) as refused, WebUser(f"ws://127.0.0.1:{port}/chat", origin="http://evil.example"):
        pass
    assert refused.value.response.status_code == 403
    code, err = server.stop()
    assert code == 0 and "WebSocket from another site (Origin http://evil.example)" in err


def test_wss_over_tls_with_nc_in_the_same_room(server_factory, pem):
    cert, key, _ = pem
    server = server_factory("--tls-cert", str(cert), "--tls-key", str(key), "--tls-port", "0",
                            "--web-tls-port", "0")
    port = web_port(server, "web-tls")
    assert f"in a browser: https://127.0.0.1:{port}/" in server.startup
    with urllib.request.urlopen(f"https://localhost:{port}/", context=client_context(), timeout=DEADLINE) as page:
        assert page.status == 200 and b"reactor chat" in page.read()
    nc = server.client("ncuser")
    from websockets.exceptions import ConnectionClosedOK, InvalidStatus
    with pytest.raises(InvalidStatus) as refused, WebUser(  # a page served over http cannot use the wss socket
            f"wss://localhost:{port}/chat", origin=f"http://localhost:{port}", context=client_context()):
        pass
    assert refused.value.response.status_code == 403
    with WebUser(f"wss://localhost:{port}/chat", origin=f"https://localhost:{port}",
                 context=client_context()) as web:
        web.login("secure")
        web.send(type="say", room="lobby", text="encrypted hello")
        nc.read_until("<secure> encrypted hello")
        nc.send("and back")
        assert web.expect("said", nick="ncuser")["text"] == "and back"
        server.signal(signal.SIGTERM)  # shutdown: a close frame, "going away"
        assert web.expect("goodbye")["message"] == "the server is shutting down"
        with pytest.raises(ConnectionClosedOK) as closed:
            web.ws.recv(timeout=DEADLINE)
        assert closed.value.rcvd.code == 1001
    code, err = server.stop()
    assert code == 0 and "Traceback" not in err


def run_server(*args: str, prelude: str = "") -> subprocess.CompletedProcess:
    code = f"{prelude}import sys; from demos.chat.server import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, "--port", "0", *args], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=DEADLINE)


def test_without_web_options_the_server_says_how_to_open_it_in_a_browser(server_factory):
    server = server_factory()
    assert "browsers: restart with --web-port 8080, then open http://127.0.0.1:8080/" in server.startup
    assert not any(line.startswith("web on ") for line in server.startup)
    code, err = server.stop()
    assert code == 0


@pytest.mark.parametrize("args, message", [
    (["--web-tls-port", "0"], "--web-tls-port needs --tls-cert and --tls-key"),
    (["--web-monitor"], "--web-monitor needs --web-port (or --web-tls-port)"),
    (["--web-port", "0", "--web-monitor", "--host", "0.0.0.0"], "is for loopback only, not --host 0.0.0.0"),
    (["--web-port", "70000"], "port must be 0-65535, got 70000"),
    (["--web-ping-timeout", "0"], "must be a positive number"),
])
def test_web_option_mistakes_are_one_line(args, message):
    result = run_server(*args)
    assert result.returncode == 2 and message in result.stderr and result.stderr.count("\n") == 1, result.stderr


def test_a_taken_web_port_and_a_missing_extra_are_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_server("--web-port", str(port))
    assert result.returncode == 2 and result.stderr == (
        f"python -m demos.chat_server: cannot listen on 127.0.0.1:{port}: Address already in use "
        f"(try another --web-port)\n")
    result = run_server("--web-port", "0", prelude="import sys; sys.modules['wsproto'] = None; ")
    assert result.returncode == 2 and result.stderr == (
        "python -m demos.chat_server: the web door needs wsproto: pip install -e '.[web]' "
        "(or pip install h11 wsproto)\n")
