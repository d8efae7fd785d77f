"""The line door: the chat for nc, telnet and demos/chat_client.py.

One line of text per message, in both directions::

    S: Welcome to the reactor chat server!
    S: Lines are sent to your room; /help lists the commands.
    S: Choose a nickname:
    C: alice
    S: *** alice joined #lobby
    C: hello everyone                 -> others see: <alice> hello everyone
    C: /msg bob psst                  -> bob sees:   [PM from alice] psst
    C: //etc/motd is a file           -> others see: <alice> /etc/motd is a file
    C: /quit bye
    S: *** goodbye

The door is a parser (``parse``: a cleaned line -> a session command) and a
renderer (``render``: an event -> lines), on ``door.Door`` for everything
else. Input goes through ``hygiene.TelnetFilter`` first (and the filter's
replies, the answers to telnet's timing marks, go straight back), then
``hygiene.clean_line``. A user is in one room at a time here: ``/join``
leaves the current room.
"""

from __future__ import annotations

import time
from typing import Union

from .core import (Emote, Error, ErrorCode, Event, Goodbye, Help, Joined, Left, Names, Notice, Private, Quit,
                   Renamed, Replay, RoomList, Said, Topic, Whois, irc_lower)
from .door import Door
from .hygiene import TelnetFilter, clean_line
from .session import (Command, EmoteCmd, HelpCmd, JoinCmd, ListCmd, NamesCmd, NickCmd, PartCmd, PrivateCmd,
                      QuitCmd, SayCmd, Session, TopicCmd, WhoisCmd)

__all__ = ["LineDoor", "parse", "render_event", "BANNER", "HELP", "PROMPT"]

BANNER = ("Welcome to the reactor chat server!",
          "Lines are sent to your room; /help lists the commands.")
PROMPT = "Choose a nickname:"
HELP = """Commands:
  /nick NAME        change your nickname
  /join ROOM        leave your room and join (or create) ROOM
  /part             leave your room
  /rooms            list rooms and how many people are in each
  /who              list the people in your room
  /topic [TEXT]     show or set your room's topic
  /whois NICK       who is NICK
  /msg NICK TEXT    send TEXT to NICK only
  /me ACTION        tell your room what you are doing
  /quit [REASON]    leave the chat
  /help             this text
  //TEXT            say /TEXT (a line that starts with /)"""


def _usage(text: str) -> Error:
    return Error(ErrorCode.NEED_MORE_PARAMS, f"usage: {text}")


def parse(text: str, registered: bool) -> Union[Command, Error]:
    """One cleaned, non-empty line -> a command (or an ``Error`` to show)."""
    if text.startswith("//"):
        text = text[1:]
        return SayCmd(text) if registered else NickCmd(text)
    if not text.startswith("/"):
        return SayCmd(text) if registered else NickCmd(text)
    name, _, rest = text[1:].partition(" ")
    name, rest = name.lower(), rest.strip()
    if name == "nick":
        return NickCmd(rest)
    if name == "join":
        return JoinCmd(rest)
    if name == "part":
        return PartCmd(None, rest)
    if name == "rooms" or name == "list":
        return ListCmd()
    if name == "who" or name == "names":
        return NamesCmd(rest or None)
    if name == "topic":
        return TopicCmd(None, rest or None)
    if name == "whois":
        return WhoisCmd(rest) if rest else _usage("/whois NICK")
    if name == "msg":
        nick, _, message = rest.partition(" ")
        if not nick or not message.strip():
            return _usage("/msg NICK TEXT")
        return PrivateCmd(nick, message.strip())
    if name == "me":
        return EmoteCmd(rest) if rest else _usage("/me ACTION")
    if name == "quit":
        return QuitCmd(rest)
    if name == "help":
        return HelpCmd()
    return Error(ErrorCode.UNKNOWN_COMMAND, f"unknown command /{name}; try /help", name)


def clock_time(at: float) -> str:
    return time.strftime("%H:%M", time.localtime(at))


def render_event(event: Event, me: str = "", in_room: bool = True) -> list[str]:
    """*event* as the line door shows it to the user *me*."""
    if isinstance(event, Said):
        return [f"<{event.who.nick}> {event.text}"]
    if isinstance(event, Emote):
        return [f"* {event.who.nick} {event.text}"]
    if isinstance(event, Joined):
        return [f"*** {event.who.nick} joined #{event.room}"]
    if isinstance(event, Left):
        return [f"*** {event.who.nick} left #{event.room}" + (f" ({event.reason})" if event.reason else "")]
    if isinstance(event, Quit):
        return [f"*** {event.who.nick} quit" + (f" ({event.reason})" if event.reason else "")]
    if isinstance(event, Renamed):
        if not in_room and irc_lower(event.new) == irc_lower(me):
            return [f"*** you are now known as {event.new}"]
        return [f"*** {event.who.nick} is now known as {event.new}"]
    if isinstance(event, Private):
        text = f"* {event.who.nick} {event.text}" if event.action else event.text
        return [f"[PM to {event.target}] {text}" if event.echo else f"[PM from {event.who.nick}] {text}"]
    if isinstance(event, Notice):
        if event.who is None:
            return [f"*** {event.text}"]
        where = f":#{event.room}" if event.room else ""
        return [f"-{event.who.nick}{where}- {event.text}"]
    if isinstance(event, Topic):
        if event.changed:
            return [f"*** {event.by} set the topic of #{event.room}: {event.text}"]
        if not event.text:
            return [] if event.on_join else [f"*** #{event.room} has no topic"]
        return [f"*** topic of #{event.room}: {event.text} (set by {event.by} at {clock_time(event.set_at)})"]
    if isinstance(event, Names):
        return [] if event.on_join else [f"*** in #{event.room}: " + ", ".join(event.nicks)]
    if isinstance(event, RoomList):
        return ["*** rooms: " + ", ".join(f"#{r.name} ({r.members})" for r in event.rooms)]
    if isinstance(event, Whois):
        rooms = ", ".join(f"#{r}" for r in event.rooms) or "no room"
        return [f"*** {event.who.nick} ({event.who.username}@{event.who.host}): in {rooms}, "
                f"idle {event.idle:.0f}s, here since {clock_time(event.signon)}"]
    if isinstance(event, Replay):
        lines = [f"*** recent lines in #{event.room}:"]
        for line in event.lines:
            shown = f"<{line.who.nick}> {line.text}" if isinstance(line, Said) else f"* {line.who.nick} {line.text}"
            lines.append(f"[{clock_time(line.at)}] {shown}")
        return lines
    if isinstance(event, Help):
        return HELP.splitlines()
    if isinstance(event, Goodbye):
        return [f"*** {event.message}; goodbye" if event.message else "*** goodbye"]
    if isinstance(event, Error):
        return [f"!!! {event.text}"]
    return []  # Welcome, Ping: nothing to show here


class LineDoor(Door):
    """One nc/telnet/chat_client user."""

    kind = "line"

    def __init__(self, server) -> None:  # type: ignore[no-untyped-def]
        super().__init__(server)
        self.telnet = TelnetFilter()

    def make_session(self, now: float) -> Session:
        return Session(self.server.chat, self.deliver, now, self.server.limits, host=self.host,
                       single_room=True, auto_join="")

    def filter(self, data: bytes) -> bytes:
        data = self.telnet.feed(data)
        replies = self.telnet.take_replies()
        if replies:
            self.transport.write(replies)
        return data

    def greet(self) -> None:
        self.send(*BANNER, PROMPT)

    def refuse(self, why: str) -> None:
        self.send("!!! the server is full, try again later" if why == "server full"
                  else "!!! the server is shutting down")

    def too_long(self) -> None:
        self.send(f"!!! line too long (at most {self.max_line()} bytes); it was discarded")

    def render(self, event: Event) -> list[str]:
        if type(event) is Said:  # the fan-out case, first
            return [f"<{event.who.nick}> {event.text}"]
        session = self.session
        if session is None or type(event) is not Renamed:
            return render_event(event)
        return render_event(event, session.nick, session.current_room is not None)

    def line(self, raw: bytes, now: float) -> None:
        session = self.session
        assert session is not None
        text = clean_line(raw)
        if not text:
            return
        cmd = parse(text, session.registered)
        if isinstance(cmd, Error):
            session.note_line(now)
            self.emit([cmd])
        else:
            self.emit(session.handle(cmd, now))
        if not session.registered and session.closed is None and not self.transport.is_closing():
            self.send(PROMPT)  # still no nickname (a bad one, or /help)
