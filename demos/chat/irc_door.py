"""The IRC door: the chat for irssi, weechat, ii, the python ``irc`` library ...

Theory of operation
-------------------
An IRC client speaks RFC 1459/2812: lines of at most 512 bytes with their
CR LF, ``[:prefix] COMMAND param ... [:trailing]``. This door turns them into
session commands and turns chat events back into IRC lines; the rooms are
the chat's rooms (IRC's ``#lobby`` is the line door's ``lobby``), so IRC
users and nc users talk to each other.

Registration: ``NICK`` and ``USER`` (``PASS`` accepted and ignored, there is
no server password), then 001-005 and the MOTD. ``CAP LS`` is answered with
an empty list (``CAP * LS :``), ``CAP REQ`` is NAKed, and registration waits
for ``CAP END`` while a negotiation is open, as IRCv3 says. Anything else
before registration gets 451.

After it: JOIN (echoed to every member including the joiner, then 332/333
or 331, 353 split to fit 512 bytes, 366, and the room's recent lines as
NOTICEs with their time), PART, QUIT (``ERROR`` to the quitter, flushed
before the close), NICK, PRIVMSG and NOTICE to a channel (not echoed to the
sender: IRC clients show their own lines) or a nick, CTCP ACTION (``/me``),
TOPIC, NAMES, WHO, LIST, WHOIS, PING (answered) and PONG (the server PINGs
a silent client and drops it if no answer comes: ``Session``'s keepalive),
MODE queries (324, 221; 501/472 for changes), and errors 401 403 404 409
411 412 417 421 431 432 433 442 451 461 462 472 501 502.

Lines longer than 510 bytes are refused with 417 and discarded as they
arrive (never buffered beyond the limit); lines we send are split (long
messages from line-door users, long name lists) or cut to fit.
Names compare with the rfc1459 case mapping (announced in 005).
"""

from __future__ import annotations

import time
from typing import Callable, Optional

from reactor import __version__ as REACTOR_VERSION

from .core import (ChatError, Emote, Error, ErrorCode, Event, Goodbye, Help, Ident, Joined, Left, MAX_NICK,
                   MAX_ROOM, MAX_TOPIC, Names, Notice, Ping, Private, Quit, Renamed, Replay, RoomList, Said,
                   Topic, Welcome, Whois, validate_nick)
from .door import Door
from .hygiene import clean_text
from .session import (EmoteCmd, JoinCmd, ListCmd, NamesCmd, NickCmd, NoticeCmd, PartCmd, PongCmd, PrivateCmd,
                      QuitCmd, SayCmd, Session, TopicCmd, WhoisCmd)

__all__ = ["IrcDoor", "parse_message", "SERVER_NAME", "MAX_IRC_LINE"]

SERVER_NAME = "reactor.chat"
VERSION = f"reactor-{REACTOR_VERSION}"
MAX_IRC_LINE = 510  # 512 with CR LF
CREATED = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
MOTD = ("Welcome to the reactor chat server!",
        "Channels here are the rooms nc and telnet users see:",
        "#lobby is where they start. /join #lobby to meet them.")
ISUPPORT = (f"CASEMAPPING=rfc1459 CHANTYPES=# NICKLEN={MAX_NICK} CHANNELLEN={MAX_ROOM + 1} "
            f"TOPICLEN={MAX_TOPIC} PREFIX=() CHANMODES=,,,n NETWORK=reactor")
PRE_REGISTRATION = {"CAP", "PASS", "NICK", "USER", "PING", "PONG", "QUIT"}

# Numerics for the errors the session reports (the command may override).
_NUMERIC = {
    ErrorCode.NICK_MISSING: ("431", False, "No nickname given"),
    ErrorCode.NICK_INVALID: ("432", True, "Erroneous nickname"),
    ErrorCode.NICK_TAKEN: ("433", True, "Nickname is already in use"),
    ErrorCode.NO_SUCH_NICK: ("401", True, "No such nick/channel"),
    ErrorCode.NO_SUCH_ROOM: ("403", True, "No such channel"),
    ErrorCode.ROOM_INVALID: ("403", True, "No such channel"),
    ErrorCode.NOT_IN_ROOM: ("442", True, "You're not on that channel"),
    ErrorCode.NO_TEXT: ("412", False, "No text to send"),
    ErrorCode.NO_RECIPIENT: ("411", False, "No recipient given"),
    ErrorCode.UNKNOWN_COMMAND: ("421", True, "Unknown command"),
    ErrorCode.NOT_REGISTERED: ("451", False, "You have not registered"),
    ErrorCode.NEED_MORE_PARAMS: ("461", True, "Not enough parameters"),
    ErrorCode.LINE_TOO_LONG: ("417", False, "Input line was too long"),
}
_ROOM_CODES = {ErrorCode.NO_SUCH_ROOM, ErrorCode.ROOM_INVALID, ErrorCode.NOT_IN_ROOM}


def parse_message(line: str) -> tuple[str, list[str]]:
    """``[@tags] [:prefix] COMMAND params [:trailing]`` -> (COMMAND, params)."""
    if line.startswith("@"):
        line = line.partition(" ")[2]
    line = line.lstrip(" ")
    if line.startswith(":"):
        line = line.partition(" ")[2]
    head, sep, trailing = line.partition(" :")
    if not sep and head.startswith(":"):  # "CMD :x" with nothing before the colon
        head, trailing, sep = "", head[1:], " :"
    words = head.split()
    if not words:
        return "", []
    params = words[1:]
    if sep:
        params.append(trailing)
    return words[0].upper(), params


def _utf8_cut(data: bytes, limit: int) -> int:
    """The largest cut <= *limit* that does not split a UTF-8 character."""
    if len(data) <= limit:
        return len(data)
    cut = limit
    while cut > 0 and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    return cut or limit


def fit(line: str) -> str:
    data = line.encode("utf-8", errors="replace")
    if len(data) <= MAX_IRC_LINE:
        return line
    return data[:_utf8_cut(data, MAX_IRC_LINE)].decode("utf-8", errors="ignore")


def split_text(head: str, text: str, tail: str = "") -> list[str]:
    """``head + piece + tail`` lines, each within 510 bytes, together carrying all of *text*."""
    budget = max(16, MAX_IRC_LINE - len(head.encode()) - len(tail.encode()))
    data = text.encode("utf-8", errors="replace")
    out = []
    while True:
        cut = _utf8_cut(data, budget)
        out.append(head + data[:cut].decode("utf-8", errors="replace") + tail)
        data = data[cut:]
        if not data:
            return out


def hhmm(at: float) -> str:
    return time.strftime("%H:%M", time.localtime(at))


class IrcDoor(Door):
    """One IRC client."""

    kind = "irc"

    def __init__(self, server) -> None:  # type: ignore[no-untyped-def]
        super().__init__(server)
        self.wanted_nick = ""
        self.username = ""
        self.realname = ""
        self.cap_open = False
        self._context = ""  # the command being handled, for error numerics

    def max_line(self) -> int:
        return MAX_IRC_LINE

    def make_session(self, now: float) -> Session:
        return Session(self.server.chat, self.deliver, now, self.server.irc_limits, host=self.host,
                       single_room=False, auto_join=None)

    # -- output helpers --------------------------------------------------------

    @property
    def me(self) -> str:
        return (self.session.nick if self.session is not None else "") or "*"

    def send(self, *lines: str) -> None:
        super().send(*(fit(line) for line in lines))

    def num(self, code: str, *params: str, text: Optional[str] = None) -> str:
        middle = " ".join((self.me,) + params)
        return f":{SERVER_NAME} {code} {middle}" + (f" :{text}" if text is not None else "")

    def refuse(self, why: str) -> None:
        self.send(f"ERROR :Closing Link: {self.host} ({'Server full' if why == 'server full' else why})")

    def too_long(self) -> None:
        self.send(self.num("417", text="Input line was too long"))

    def error_line(self, event: Error) -> list[str]:
        command = self._context
        if command == "NOTICE":
            return []  # never answer a NOTICE (RFC 2812 3.3.2)
        if event.code == ErrorCode.ALREADY_IN_ROOM:
            return []  # JOIN of a channel you are in: nothing happens
        if event.code == ErrorCode.NOT_IN_ROOM and command == "PRIVMSG":
            return [self.num("404", "#" + event.arg.lstrip("#"), text="Cannot send to channel")]
        numeric, with_arg, text = _NUMERIC.get(event.code, ("400", False, event.text))
        if event.code == ErrorCode.NEED_MORE_PARAMS:
            return [self.num(numeric, command or "*", text=text)]
        if event.code == ErrorCode.UNKNOWN_COMMAND:
            return [self.num(numeric, event.arg or command, text=text)]
        arg = event.arg or "*"
        if event.code in _ROOM_CODES and arg != "*":
            arg = "#" + arg.lstrip("#")
        return [self.num(numeric, arg, text=text)] if with_arg else [self.num(numeric, text=text)]

    # -- events -> lines -------------------------------------------------------

    def _prefix_of(self, nick: str) -> str:
        user = self.server.chat.find_user(nick)
        return user.ident.prefix if user is not None else Ident(nick).prefix

    def render(self, event: Event) -> list[str]:
        me = self.me
        mine = self.session is not None and self.session.user is not None
        if isinstance(event, Said):
            return split_text(f":{event.who.prefix} PRIVMSG #{event.room} :", event.text)
        if isinstance(event, Emote):
            if mine and event.who.nick == me:
                return []  # the client showed it already
            return split_text(f":{event.who.prefix} PRIVMSG #{event.room} :\x01ACTION ", event.text, "\x01")
        if isinstance(event, Private):
            if event.echo:
                return []
            if event.action:
                return split_text(f":{event.who.prefix} PRIVMSG {me} :\x01ACTION ", event.text, "\x01")
            return split_text(f":{event.who.prefix} PRIVMSG {me} :", event.text)
        if isinstance(event, Notice):
            if event.who is None:
                return split_text(f":{SERVER_NAME} NOTICE {me} :", event.text)
            target = f"#{event.room}" if event.room else me
            return split_text(f":{event.who.prefix} NOTICE {target} :", event.text)
        if isinstance(event, Joined):
            return [f":{event.who.prefix} JOIN #{event.room}"]
        if isinstance(event, Left):
            return [f":{event.who.prefix} PART #{event.room}" + (f" :{event.reason}" if event.reason else "")]
        if isinstance(event, Quit):
            return [f":{event.who.prefix} QUIT :{event.reason or 'Quit'}"]
        if isinstance(event, Renamed):
            return [f":{event.who.prefix} NICK :{event.new}"]
        if isinstance(event, Topic):
            room = f"#{event.room}"
            if event.changed:
                return [f":{self._prefix_of(event.by)} TOPIC {room} :{event.text}"]
            if not event.text:
                return [self.num("331", room, text="No topic is set")]
            return [self.num("332", room, text=event.text),
                    self.num("333", room, event.by or SERVER_NAME, str(int(event.set_at)))]
        if isinstance(event, Names):
            return self.names_lines(event.room, event.nicks)
        if isinstance(event, Replay):
            head = f":{SERVER_NAME} NOTICE #{event.room} :"
            lines = split_text(head, f"Replaying the last {len(event.lines)} line(s) of #{event.room}:")
            for line in event.lines:
                said = f"<{line.who.nick}> {line.text}" if isinstance(line, Said) else f"* {line.who.nick} {line.text}"
                lines += split_text(head, f"[{hhmm(line.at)}] {said}")
            return lines
        if isinstance(event, RoomList):
            return ([self.num("321", "Channel", text="Users  Name")]
                    + [self.num("322", f"#{r.name}", str(r.members), text=r.topic) for r in event.rooms]
                    + [self.num("323", text="End of /LIST")])
        if isinstance(event, Whois):
            who = event.who
            lines = [self.num("311", who.nick, who.username, who.host or "unknown", "*", text=event.realname)]
            if event.rooms:
                lines += split_text(self.num("319", who.nick, text=""), " ".join(f"#{r}" for r in event.rooms))
            lines += [self.num("312", who.nick, SERVER_NAME, text="reactor chat"),
                      self.num("317", who.nick, str(int(event.idle)), str(int(event.signon)),
                               text="seconds idle, signon time"),
                      self.num("318", who.nick, text="End of /WHOIS list")]
            return lines
        if isinstance(event, Welcome):
            return self.welcome_lines(event.who)
        if isinstance(event, Help):
            return [f":{SERVER_NAME} NOTICE {me} :Your IRC client has the commands: /join #lobby, /msg, /me ..."]
        if isinstance(event, Ping):
            return [f"PING :{event.token}"]
        if isinstance(event, Goodbye):
            message = event.message or event.reason
            return [f"ERROR :Closing Link: {self.host} ({message[:1].upper() + message[1:]})"]
        if isinstance(event, Error):
            return self.error_line(event)
        return []

    def names_lines(self, room: str, nicks: tuple[str, ...]) -> list[str]:
        head = self.num("353", "=", f"#{room}", text="")
        budget = MAX_IRC_LINE - len(head.encode())
        lines, current = [], ""
        for nick in nicks:
            if current and len(current) + 1 + len(nick) > budget:
                lines.append(head + current)
                current = ""
            current = f"{current} {nick}" if current else nick
        if current:
            lines.append(head + current)
        return lines + [self.num("366", f"#{room}", text="End of /NAMES list")]

    def welcome_lines(self, who: Ident) -> list[str]:
        lines = [self.num("001", text=f"Welcome to the reactor chat, {who.prefix}"),
                 self.num("002", text=f"Your host is {SERVER_NAME}, running version {VERSION}"),
                 self.num("003", text=f"This server was created {CREATED}"),
                 self.num("004", SERVER_NAME, VERSION, "i", "n"),
                 self.num("005", ISUPPORT, text="are supported by this server")]
        return lines + self.motd_lines()

    def motd_lines(self) -> list[str]:
        motd = self.server.motd if hasattr(self.server, "motd") else MOTD
        if not motd:
            return [self.num("422", text="MOTD File is missing")]
        return ([self.num("375", text=f"- {SERVER_NAME} Message of the day - ")]
                + [self.num("372", text=f"- {line}") for line in motd]
                + [self.num("376", text="End of /MOTD command.")])

    # -- lines -> commands -----------------------------------------------------

    def line(self, raw: bytes, now: float) -> None:
        session = self.session
        assert session is not None
        command, params = parse_message(raw.decode("utf-8", errors="replace"))
        if not command:
            return
        self._context = command
        try:
            if not session.registered and command not in PRE_REGISTRATION:
                session.note_line(now)
                self.send(self.num("451", text="You have not registered"))
                return
            handler: Optional[Callable[[list[str], float], None]] = getattr(self, f"irc_{command}", None)
            if handler is None or not command.isalpha():
                session.note_line(now)
                self.send(self.num("421", command[:32], text="Unknown command"))
                return
            handler(params, now)
        finally:
            self._context = ""

    def do(self, cmd: object, now: float) -> list[Event]:
        assert self.session is not None
        events = self.session.handle(cmd, now)  # type: ignore[arg-type]
        self.emit(events)
        return events

    def need(self, params: list[str], n: int, now: float) -> bool:
        """At least *n* parameters, or 461 (the line still counts against the flood limit)."""
        if len(params) >= n:
            return True
        assert self.session is not None
        self.session.note_line(now)
        self.send(self.num("461", self._context, text="Not enough parameters"))
        return False

    # registration

    def irc_CAP(self, params: list[str], now: float) -> None:
        assert self.session is not None
        self.session.note_line(now)
        if not self.need(params, 1, now):
            return
        sub = params[0].upper()
        if sub == "LS":
            self.cap_open = not self.session.registered
            self.send(f":{SERVER_NAME} CAP {self.me} LS :")
        elif sub == "LIST":
            self.send(f":{SERVER_NAME} CAP {self.me} LIST :")
        elif sub == "REQ":
            self.cap_open = not self.session.registered
            self.send(f":{SERVER_NAME} CAP {self.me} NAK :{params[1] if len(params) > 1 else ''}")
        elif sub == "END":
            self.cap_open = False
            self.try_register(now)
        else:
            self.send(self.num("410", sub[:32], text="Invalid CAP command"))

    def irc_PASS(self, params: list[str], now: float) -> None:
        assert self.session is not None
        self.session.note_line(now)
        if self.session.registered:
            self.send(self.num("462", text="You may not reregister"))

    def irc_NICK(self, params: list[str], now: float) -> None:
        session = self.session
        assert session is not None
        if not params or not params[0]:
            session.note_line(now)
            self.send(self.num("431", text="No nickname given"))
            return
        nick = params[0]
        if session.registered:
            self.do(NickCmd(nick), now)
            return
        session.note_line(now)
        try:
            validate_nick(nick)
            if self.server.chat.find_user(nick) is not None:
                raise ChatError(ErrorCode.NICK_TAKEN, "taken", nick)
        except ChatError as exc:
            self.emit([Error(exc.code, exc.text, exc.arg or nick)])
            return
        self.wanted_nick = nick
        self.try_register(now)

    def irc_USER(self, params: list[str], now: float) -> None:
        session = self.session
        assert session is not None
        if session.registered:
            session.note_line(now)
            self.send(self.num("462", text="You may not reregister"))
            return
        if not self.need(params, 4, now):
            return
        session.note_line(now)
        self.username = "".join(ch for ch in params[0] if ch.isalnum() or ch in "-_.")[:MAX_NICK] or "user"
        self.realname = clean_text(params[3])[:64]
        self.try_register(now)

    def try_register(self, now: float) -> None:
        session = self.session
        assert session is not None
        if session.registered or self.cap_open or not self.wanted_nick or not self.username:
            return
        nick, self.wanted_nick = self.wanted_nick, ""
        self._context = "NICK"
        self.do(NickCmd(nick, "~" + self.username if not self.username.startswith("~") else self.username,
                        self.realname), now)

    def irc_PING(self, params: list[str], now: float) -> None:
        assert self.session is not None
        self.session.handle(PongCmd(), now)  # proof of life; not activity
        if not params:
            self.send(self.num("409", text="No origin specified"))
            return
        self.send(f":{SERVER_NAME} PONG {SERVER_NAME} :{params[-1]}")

    def irc_PONG(self, params: list[str], now: float) -> None:
        assert self.session is not None
        self.session.handle(PongCmd(), now)

    def irc_QUIT(self, params: list[str], now: float) -> None:
        reason = clean_text(params[0]) if params else ""
        assert self.session is not None
        events = self.session.handle(QuitCmd(reason), now)
        self.emit([Goodbye(g.reason, f"Quit: {reason}" if reason else "Quit") if isinstance(g, Goodbye) else g
                   for g in events])

    # channels

    def irc_JOIN(self, params: list[str], now: float) -> None:
        if not self.need(params, 1, now):
            return
        if params[0] == "0":  # JOIN 0: leave every channel
            assert self.session is not None and self.session.user is not None
            rooms = list(self.session.user.rooms.values())
            if not rooms:
                self.session.note_line(now)
            for room in rooms:
                self.do(PartCmd(room.name, ""), now)
            return
        for name in params[0].split(","):
            if not name.startswith("#"):
                assert self.session is not None
                self.session.note_line(now)
                self.send(self.num("403", name[:64] or "*", text="No such channel"))
                continue
            self.do(JoinCmd(name), now)

    def irc_PART(self, params: list[str], now: float) -> None:
        if not self.need(params, 1, now):
            return
        reason = clean_text(params[1]) if len(params) > 1 else ""
        for name in params[0].split(","):
            self.do(PartCmd(name, reason), now)

    def irc_TOPIC(self, params: list[str], now: float) -> None:
        if not self.need(params, 1, now):
            return
        text = clean_text(params[1]) if len(params) > 1 else None
        self.do(TopicCmd(params[0], text), now)

    def irc_NAMES(self, params: list[str], now: float) -> None:
        session = self.session
        assert session is not None and session.user is not None
        if not params or not params[0]:
            session.note_line(now)
            for room in list(session.user.rooms.values()):
                self.send(*self.names_lines(room.name, tuple(u.nick for u in room.members.values()))[:-1])
            self.send(self.num("366", "*", text="End of /NAMES list"))
            return
        for name in params[0].split(","):
            found = self.server.chat.find_room(name)
            if found is None:
                session.note_line(now)
                self.send(self.num("366", name[:64], text="End of /NAMES list"))
            else:
                self.do(NamesCmd(found.name), now)

    def irc_LIST(self, params: list[str], now: float) -> None:
        self.do(ListCmd(), now)

    def irc_WHO(self, params: list[str], now: float) -> None:
        session = self.session
        assert session is not None
        session.note_line(now)
        mask = params[0] if params else "*"
        chat = self.server.chat
        lines = []
        if mask.startswith("#"):
            room = chat.find_room(mask)
            members = [(f"#{room.name}", u) for u in room.members.values()] if room is not None else []
        else:
            user = chat.find_user(mask)
            members = [(f"#{next(iter(user.rooms.values())).name}" if user.rooms else "*", user)] if user else []
        for channel, user in members:
            ident = user.ident
            lines.append(self.num("352", channel, ident.username, ident.host or "unknown", SERVER_NAME, ident.nick,
                                  "H", text=f"0 {user.realname}"))
        self.send(*lines, self.num("315", mask[:64], text="End of WHO list"))

    def irc_WHOIS(self, params: list[str], now: float) -> None:
        session = self.session
        assert session is not None
        if not params or not params[-1]:
            session.note_line(now)
            self.send(self.num("431", text="No nickname given"))
            return
        for nick in params[-1].split(","):
            events = self.do(WhoisCmd(nick), now)
            if any(isinstance(e, Error) for e in events):
                self.send(self.num("318", nick[:64], text="End of /WHOIS list"))

    def irc_MODE(self, params: list[str], now: float) -> None:
        if not self.need(params, 1, now):
            return
        session = self.session
        assert session is not None
        session.note_line(now)
        target, modes = params[0], "".join(params[1:2])
        if target.startswith("#"):
            room = self.server.chat.find_room(target)
            if room is None:
                self.send(self.num("403", target[:64], text="No such channel"))
            elif not modes:
                self.send(self.num("324", f"#{room.name}", "+n"))
            elif modes.lstrip("+") == "b":
                self.send(self.num("368", f"#{room.name}", text="End of channel ban list"))
            else:
                unknown = next((ch for ch in modes if ch not in "+-"), "?")
                self.send(self.num("472", unknown, text="is unknown mode char to me"))
            return
        if self.server.chat.find_user(target) is not session.user:
            if self.server.chat.find_user(target) is None:
                self.send(self.num("401", target[:64], text="No such nick/channel"))
            else:
                self.send(self.num("502", text="Can't change mode for other users"))
        elif not modes or set(modes) <= set("+-i"):
            self.send(self.num("221", "+i"))
        else:
            self.send(self.num("501", text="Unknown MODE flag"))

    # talking

    def _talk(self, params: list[str], now: float, notice: bool) -> None:
        session = self.session
        assert session is not None
        if not params or not params[0]:
            session.note_line(now)
            if not notice:
                self.send(self.num("411", text=f"No recipient given ({self._context})"))
            return
        text = params[1] if len(params) > 1 else ""
        action = False
        if text.startswith("\x01"):  # CTCP
            body = text.strip("\x01")
            verb, _, rest = body.partition(" ")
            if verb.upper() != "ACTION" or notice:
                session.note_line(now)
                return  # other CTCP (VERSION, PING ...): not relayed
            text, action = rest, True
        text = clean_text(text)
        if not text:
            session.note_line(now)
            if not notice:
                self.send(self.num("412", text="No text to send"))
            return
        for target in params[0].split(","):
            if notice:
                self.do(NoticeCmd(target, text), now)
            elif target.startswith("#"):
                self.do(EmoteCmd(text, target) if action else SayCmd(text, target), now)
            else:
                self.do(PrivateCmd(target, text, action), now)

    def irc_PRIVMSG(self, params: list[str], now: float) -> None:
        self._talk(params, now, notice=False)

    def irc_NOTICE(self, params: list[str], now: float) -> None:
        self._talk(params, now, notice=True)
