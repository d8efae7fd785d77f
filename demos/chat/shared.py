"""A chat shared by several servers: every server keeps a replica, changed only in the log's order. No I/O.

Theory of operation
-------------------
Several chat servers (processes, machines) serve the same rooms. Each one
runs a ``SharedChat``: a ``core.Chat`` whose users and rooms are a *replica*
of the shared chat, and which changes that replica only by applying
*events* from one ordered log (Redis pub/sub, see ``backplane``), in the
log's order. Every server applies the same events in the same order, so
every replica goes through the same states, and every user, on whatever
server, sees every room's events in the same order. Nothing is delivered
straight from a user to their neighbours, not even on the same server:
a line goes to the log and comes back.

Two sides:

- **Commands** (what ``Session`` calls: ``register``, ``join``, ``say``
  ...) are checked against what this server knows, then turned into an
  *op*, a small dict (``{"t": "say", "u": uid, "rk": "lobby", "x": "hi",
  "at": ...}``), handed to ``publish``. Users are named by a *uid*,
  unique across servers (``<server id>/<n>``), never by their nickname,
  which can change.
- **Events** (``receive(data)``, or ``apply(op)``) are ops as the log
  returns them, with a sequence number ``s`` and the author's identity as
  the log knew it: they change the replica and are delivered to this
  server's users as ``core`` events (``Joined``, ``Said`` ...), following
  the same rules as ``core.Chat``.

What cannot wait for the log: the ``Session`` expects a ``User`` from
``register`` at once and reads ``user.rooms`` to know where a plain line
goes. So for *this server's* users, ``user.rooms`` is their **intent**:
changed when they type ``/join`` (a line typed right after goes to the new
room), while the replica's membership (``room.members``, ``user.joined``)
changes when the log says so. For other servers' users the two are the
same dict. Registration is optimistic: the nickname is checked against
the replica and taken at once; two servers that give the same nickname
within the same millisecond are told apart by the log's order, and the
later user is renamed (``Guest<n>``) with a notice.

**Local mode.** With ``publish`` None (no log: Redis is away), ops are
applied at once, locally: this server's users go on talking to each other,
and the others' users stay as they were last seen. Ops sent and not yet
seen back when the log went away (``awaiting``) are applied locally then,
in order, so nothing typed is lost. When the log is back the backplane
calls ``begin_sync`` (which returns the ``restore`` op: this server's users
and rooms, so that the shared state includes them again), and
``load_snapshot``: the replica is rebuilt from the shared state at a known
sequence number, events held meanwhile are applied if they are newer, and
the users hear about what changed while they were apart (who joined, left,
quit or changed nickname).
"""

from __future__ import annotations

import itertools
import json
import logging
from typing import Any, Callable, Iterator, Optional, Union

from .core import (MAX_TOPIC, Chat, ChatError, Emote, ErrorCode, Error, Event, Ident, Joined, Left, Names, Notice,
                   Private, Quit, Renamed, Replay, Room, RoomInfo, Said, Sink, Topic, User, irc_lower,
                   validate_room)

__all__ = ["SharedChat", "SharedUser", "Op", "MAX_HELD"]

log = logging.getLogger("demos.chat.shared")

Op = dict[str, Any]
MAX_HELD = 100_000  # events held while a snapshot is awaited; past it the sync starts again
OUTAGE = ("the other chat servers are out of reach ({why}); until they are back, only people on this "
          "server hear you")
RESTORED = "the other chat servers are back"


def _drop(event: Event) -> None:
    """The sink of another server's user: its own server delivers its events."""


class SharedUser(User):
    """A user of the shared chat: ``uid`` names them everywhere; ``local`` ones are ours.

    ``joined``: the rooms the replica has them in (log order). For a local
    user, ``rooms`` is what they asked for (see the module docstring); for
    others it is the same dict as ``joined``.
    """

    def __init__(self, uid: str, ident: Ident, sink: Sink, now: float, realname: str, local: bool) -> None:
        super().__init__(ident, sink, now, realname)
        self.uid = uid
        self.local = local
        self.confirmed = not local  # a local user's registration has come back from the log
        self.joined: dict[str, Room] = {} if local else self.rooms


class SharedChat(Chat):
    """A ``Chat`` replica in the log's order (see the module docstring).

    *sid*: this server's id, unique among the servers sharing the log.
    Set ``publish`` to send ops to the log (None: local mode).
    ``on_out_of_sync(why)`` is called when an event shows that the log and
    this server disagree (another server removed our users, believing us
    dead): the backplane then syncs again.
    """

    def __init__(self, sid: str, default_room: str = "lobby", *, history_lines: int = 20,
                 history_bytes: int = 16 * 1024) -> None:
        super().__init__(default_room, history_lines=history_lines, history_bytes=history_bytes)
        self.sid = sid
        self._uid_prefix = f"{sid}/"
        self.by_uid: dict[str, SharedUser] = {}
        self.local: dict[str, SharedUser] = {}  # this server's users, until they quit
        self.publish: Optional[Callable[[Op], None]] = None
        self.awaiting: dict[int, Op] = {}  # op number -> op sent and not seen back yet
        self.claims: dict[str, str] = {}  # nick key -> uid of a local rename on its way
        self.seq = 0  # the last event applied
        self.held: Optional[list[Op]] = None  # events that came while a snapshot is awaited
        self.outage: Optional[str] = None  # why the log is away, while it is
        self.on_out_of_sync: Optional[Callable[[str], None]] = None
        self._ops = itertools.count(1)
        self._uids = itertools.count(1)

    # -- helpers -------------------------------------------------------------------

    def local_users(self) -> Iterator[SharedUser]:
        return iter(list(self.local.values()))

    def announce(self, text: str, now: float) -> None:
        """A server notice to this server's users (the others have their own server)."""
        for user in self.local_users():
            user.sink(Notice(text, now))

    def room_list(self) -> list[RoomInfo]:
        default = irc_lower(self.default_room)
        return sorted((RoomInfo(r.name, len(r.members), r.topic) for k, r in self.rooms.items()
                       if r.members or k == default), key=lambda info: irc_lower(info.name))

    def _check_nick(self, nick: str, current: Optional[User] = None) -> str:
        key = super()._check_nick(nick, current)
        claimant = self.claims.get(key)
        if claimant is not None and (current is None or claimant != getattr(current, "uid", None)):
            raise ChatError(ErrorCode.NICK_TAKEN, f"nickname {nick} is taken", nick)
        return key

    def _send(self, op: Op) -> None:
        number = next(self._ops)
        op["o"] = number
        if self.publish is None:
            self.apply(op)
            return
        self.awaiting[number] = op
        self.publish(op)  # may fail and call go_local(), which applies it here

    def _tidy(self, room: Room) -> None:
        """Forget an empty room nobody here is about to join (as ``core`` does)."""
        key = irc_lower(room.name)
        if room.members or key == irc_lower(self.default_room) or self.rooms.get(key) is not room:
            return
        if any(key in user.rooms for user in self.local.values()):
            return
        del self.rooms[key]

    @staticmethod
    def _at(now: float) -> float:
        return round(now, 3)

    # -- commands (what Session calls) ------------------------------------------------

    def register(self, nick: str, sink: Sink, now: float, *, username: str = "", host: str = "",
                 realname: str = "") -> User:
        key = self._check_nick(nick)
        uid = f"{self._uid_prefix}{next(self._uids)}"
        user = SharedUser(uid, Ident(nick, username or nick, host), sink, now, realname or nick, local=True)
        self.users[key] = user
        self.by_uid[uid] = user
        self.local[uid] = user
        if self.outage is not None:
            sink(Notice(OUTAGE.format(why=self.outage), now))
        self._send({"t": "reg", "u": uid, "n": nick, "k": key, "un": user.ident.username, "h": host,
                    "rn": user.realname, "on": self._at(now), "sid": self.sid, "at": self._at(now)})
        return user

    def rename(self, user: User, nick: str, now: float) -> None:
        assert isinstance(user, SharedUser)
        key = self._check_nick(nick, current=user)
        if user.ident.nick == nick:
            return
        self.claims[key] = user.uid
        self._send({"t": "nick", "u": user.uid, "n": nick, "k": key, "at": self._at(now)})

    def quit(self, user: User, reason: str, now: float) -> None:
        assert isinstance(user, SharedUser)
        if self.local.pop(user.uid, None) is None:
            return  # quit already
        rooms, user.rooms = list(user.rooms.values()), {}
        self._send({"t": "quit", "u": user.uid, "why": reason, "at": self._at(now)})
        for room in rooms:
            self._tidy(room)

    def join(self, user: User, name: str, now: float) -> Room:
        assert isinstance(user, SharedUser)
        bare = validate_room(name)
        key = irc_lower(bare)
        if key in user.rooms:
            raise ChatError(ErrorCode.ALREADY_IN_ROOM, f"you are already in #{user.rooms[key].name}", bare)
        room = self._room(bare)
        user.rooms[key] = room
        self._send({"t": "join", "u": user.uid, "r": bare, "rk": key, "at": self._at(now)})
        return room

    def part(self, user: User, name: str, reason: str, now: float) -> None:
        assert isinstance(user, SharedUser)
        room = self._member_room(user, name)
        key = irc_lower(room.name)
        del user.rooms[key]
        self._send({"t": "part", "u": user.uid, "rk": key, "why": reason, "at": self._at(now)})
        self._tidy(room)

    def topic(self, user: User, name: str, text: Optional[str], now: float) -> Optional[Topic]:
        assert isinstance(user, SharedUser)
        room = self._member_room(user, name)
        if text is None:
            return Topic(room.name, room.topic, room.topic_by, room.topic_at, False, now)
        self._send({"t": "topic", "u": user.uid, "rk": irc_lower(room.name), "x": text[:MAX_TOPIC],
                    "at": self._at(now)})
        return None

    def say(self, user: User, name: str, text: str, now: float) -> None:
        assert isinstance(user, SharedUser)
        room = self._member_room(user, name)
        self._send({"t": "say", "u": user.uid, "rk": irc_lower(room.name), "x": text, "at": self._at(now)})

    def emote(self, user: User, name: str, text: str, now: float) -> None:
        assert isinstance(user, SharedUser)
        room = self._member_room(user, name)
        self._send({"t": "me", "u": user.uid, "rk": irc_lower(room.name), "x": text, "at": self._at(now)})

    def _target(self, nick: str) -> SharedUser:
        target = self.find_user(nick)
        if target is None:
            raise ChatError(ErrorCode.NO_SUCH_NICK, f"no such user: {nick}", nick)
        assert isinstance(target, SharedUser)
        return target

    def private(self, user: User, nick: str, text: str, now: float, *, action: bool = False) -> None:
        assert isinstance(user, SharedUser)
        target = self._target(nick)
        if target is user:
            user.sink(Private(user.ident, user.nick, text, now, action=action))
            return
        user.sink(Private(user.ident, target.nick, text, now, echo=True, action=action))
        self._send({"t": "msg", "u": user.uid, "to": target.uid, "tn": target.nick, "x": text, "act": action,
                    "at": self._at(now)})

    def notice(self, user: User, target: str, text: str, now: float) -> None:
        assert isinstance(user, SharedUser)
        if target.startswith("#"):
            room = self._member_room(user, target)
            self._send({"t": "rnotice", "u": user.uid, "rk": irc_lower(room.name), "x": text, "at": self._at(now)})
            return
        other = self._target(target)
        self._send({"t": "unotice", "u": user.uid, "to": other.uid, "tn": other.nick, "x": text,
                    "at": self._at(now)})

    # -- the log's answers --------------------------------------------------------------

    def reject(self, op: Op, why: str) -> None:
        """The log refused *op* (the shared state disagreed): tell its author."""
        self.awaiting.pop(op.get("o", 0), None)
        user = self.local.get(op.get("u", ""))
        if op["t"] == "nick":
            self.claims.pop(op["k"], None)
        if user is None:
            return
        if why == "taken":
            user.sink(Error(ErrorCode.NICK_TAKEN, f"nickname {op['n']} is taken", op["n"]))
        elif why == "nosuchnick":
            user.sink(Error(ErrorCode.NO_SUCH_NICK, f"no such user: {op.get('tn', '?')}", op.get("tn", "")))
        elif why == "notin":
            user.sink(Error(ErrorCode.NOT_IN_ROOM, "you are not in that room (any more)"))
        else:
            log.info("the log refused %s for %s: %s", op["t"], user.nick, why)

    def receive(self, data: bytes) -> None:
        """One message from the log (JSON); applied in order, or held during a sync."""
        event = json.loads(data)
        if self.held is not None:
            self.held.append(event)
            if len(self.held) > MAX_HELD and self.on_out_of_sync is not None:
                self.on_out_of_sync(f"more than {MAX_HELD} events arrived before the snapshot")
            return
        seq = event.get("s", 0)
        if seq <= self.seq:
            log.debug("skipped event %d (at %d already): %.200r", seq, self.seq, event)
            return  # already in the snapshot
        self.seq = seq
        self.apply(event)

    def apply(self, event: Op) -> None:
        """Apply one event (from the log, or an op in local mode) to the replica and deliver it."""
        number = event.get("o")
        if number is not None and event.get("u", "").startswith(self._uid_prefix):
            self.awaiting.pop(number, None)
        handler = _APPLY.get(event.get("t", ""))
        if handler is None:
            log.debug("ignored an event of unknown type: %.200r", event)
            return
        handler(self, event)

    def _user(self, event: Op) -> Optional[SharedUser]:
        user = self.by_uid.get(event.get("u", ""))
        if user is None:
            log.debug("event for an unknown user: %.200r", event)
        return user

    def _in_room(self, event: Op) -> tuple[Optional[SharedUser], Optional[Room]]:
        """The event's author and room, if the replica has the author in that room."""
        user = self._user(event)
        if user is None:
            return None, None
        room = user.joined.get(event.get("rk", ""))
        if room is None:
            log.debug("event for a room %s is not in: %.200r", user.nick, event)
        return user, room

    def _key_user(self, user: SharedUser, key: str) -> None:
        """*user* answers to nickname key *key*; a local user still waiting for
        the log's word on the same nickname gives way (it will get another)."""
        holder = self.users.get(key)
        if holder is not None and holder is not user:
            assert isinstance(holder, SharedUser)
            if not (holder.local and not holder.confirmed):
                log.warning("replica disagreement: %s and %s both named %s", holder.uid, user.uid, key)
        self.users[key] = user

    def _rename_in_replica(self, user: SharedUser, nick: str) -> Ident:
        old = user.ident
        old_key, key = irc_lower(old.nick), irc_lower(nick)
        if self.users.get(old_key) is user:
            del self.users[old_key]
        self._key_user(user, key)
        for room in user.joined.values():
            room.members.pop(old_key, None)
            room.members[key] = user
        user.ident = Ident(nick, old.username, old.host)
        return old

    def _neighbours(self, user: SharedUser) -> list[SharedUser]:
        seen = {id(user)}
        out: list[SharedUser] = []
        for room in list(user.joined.values()):
            for other in room.members.values():
                if id(other) not in seen:
                    seen.add(id(other))
                    out.append(other)  # type: ignore[arg-type]
        return out

    def _apply_reg(self, event: Op) -> None:
        uid, nick, at = event["u"], event["n"], float(event.get("at", 0.0))
        user = self.by_uid.get(uid)
        if user is None:
            if uid.startswith(self._uid_prefix):
                return  # ours, and gone already (a late echo)
            user = SharedUser(uid, Ident(nick, event.get("un") or nick, event.get("h", "")), _drop,
                              float(event.get("on", at)), event.get("rn") or nick, local=False)
            self.by_uid[uid] = user
            self._key_user(user, irc_lower(nick))
            return
        user.confirmed = True
        if user.nick != nick:  # the log gave our user another nickname
            self._fallback(user, nick, at)
        elif self.users.get(irc_lower(nick)) is not user:
            self._key_user(user, irc_lower(nick))

    def _fallback(self, user: SharedUser, nick: str, at: float) -> None:
        wanted = user.nick
        old = self._rename_in_replica(user, nick)
        event = Renamed(old, nick, at)
        user.sink(event)
        for other in self._neighbours(user):
            other.sink(event)
        user.sink(Notice(f"nickname {wanted} was taken on another server at the same moment; "
                         f"you are now {nick} (/nick to choose another)", at))

    def _apply_nick(self, event: Op) -> None:
        user = self._user(event)
        if user is None:
            return
        nick, at = event["n"], float(event.get("at", 0.0))
        self.claims.pop(irc_lower(nick), None)
        if user.ident.nick == nick:
            return
        old = self._rename_in_replica(user, nick)
        renamed = Renamed(old, nick, at)
        user.sink(renamed)
        for other in self._neighbours(user):
            other.sink(renamed)

    def _apply_join(self, event: Op) -> None:
        user = self._user(event)
        if user is None:
            return
        name, at = event.get("r") or event["rk"], float(event.get("at", 0.0))
        room = self._room(name)
        if not room.members:
            room.name = name  # the log's spelling of a new room
        key = irc_lower(room.name)
        if key in user.joined:
            return
        room.members[irc_lower(user.nick)] = user
        user.joined[key] = room
        room.send(Joined(room.name, user.ident, at))
        if user.local:
            sink = user.sink
            sink(Topic(room.name, room.topic, room.topic_by, room.topic_at, False, at, on_join=True))
            sink(Names(room.name, tuple(u.nick for u in room.members.values()), on_join=True))
            if room.history:
                sink(Replay(room.name, tuple(room.history)))

    def _apply_part(self, event: Op) -> None:
        user, room = self._in_room(event)
        if user is None or room is None:
            return
        room.send(Left(room.name, user.ident, event.get("why", ""), float(event.get("at", 0.0))))
        room.members.pop(irc_lower(user.nick), None)
        del user.joined[irc_lower(room.name)]
        self._tidy(room)

    def _apply_line(self, event: Op) -> None:
        user, room = self._in_room(event)
        if user is None or room is None:
            return
        at = float(event.get("at", 0.0))
        if event["t"] == "say":
            said = Said(room.name, user.ident, event["x"], at)
            room.remember(said)
            room.send(said, exclude=user)
        else:
            emote = Emote(room.name, user.ident, event["x"], at)
            room.remember(emote)
            room.send(emote)

    def _apply_topic(self, event: Op) -> None:
        user, room = self._in_room(event)
        if user is None or room is None:
            return
        at = float(event.get("at", 0.0))
        room.topic, room.topic_by, room.topic_at = event["x"], user.nick, at
        room.send(Topic(room.name, room.topic, user.nick, at, True, at))

    def _apply_rnotice(self, event: Op) -> None:
        user, room = self._in_room(event)
        if user is None or room is None:
            return
        room.send(Notice(event["x"], float(event.get("at", 0.0)), user.ident, room.name), exclude=user)

    def _apply_quit(self, event: Op) -> None:
        user = self._user(event)
        if user is None:
            return
        if user.local and user.uid in self.local:
            # Another server removed one of our users: it took us for dead.
            # Our users are still here: the backplane syncs them back in.
            if self.on_out_of_sync is not None:
                self.on_out_of_sync(f"another server removed {user.nick} ({event.get('why', '')})")
            return
        quit_ = Quit(user.ident, event.get("why", ""), float(event.get("at", 0.0)))
        neighbours = self._neighbours(user)
        del self.by_uid[user.uid]
        key = irc_lower(user.nick)
        if self.users.get(key) is user:
            del self.users[key]
        for room in list(user.joined.values()):
            room.members.pop(key, None)
            user.joined.pop(irc_lower(room.name), None)
            self._tidy(room)
        for other in neighbours:
            other.sink(quit_)

    def _sender(self, event: Op) -> Ident:
        user = self.by_uid.get(event.get("u", ""))
        if user is not None:
            return user.ident
        return Ident(event.get("n", "?"), event.get("un", ""), event.get("h", ""))

    def _apply_msg(self, event: Op) -> None:
        target = self.by_uid.get(event.get("to", ""))
        if target is None or not target.local:
            return
        at = float(event.get("at", 0.0))
        if event["t"] == "msg":
            target.sink(Private(self._sender(event), target.nick, event["x"], at, action=bool(event.get("act"))))
        else:
            target.sink(Notice(event["x"], at, self._sender(event)))

    # -- the log coming and going -----------------------------------------------------

    def go_local(self, why: str, now: float) -> None:
        """The log is away: apply what was on its way, then work alone. Says so to users (once per outage)."""
        self.publish = None
        self.held = None
        first = self.outage is None
        self.outage = why
        ops, self.awaiting = list(self.awaiting.values()), {}
        self.claims.clear()
        if first:
            self.announce(OUTAGE.format(why=why), now)
        for op in ops:
            if op["t"] in ("reg", "nick") and not self._local_nick(op):
                continue
            self.apply(op)

    def _local_nick(self, op: Op) -> bool:
        """In local mode a nickname is ours if the replica says it is free. A
        registration falls back to a free ``Guest<n>``; a rename is refused
        (False: do not apply *op*)."""
        key = irc_lower(op["n"])
        holder = self.users.get(key)
        if holder is None or getattr(holder, "uid", None) == op["u"]:
            return True
        if op["t"] == "nick":
            user = self.local.get(op["u"])
            if user is not None:
                user.sink(Error(ErrorCode.NICK_TAKEN, f"nickname {op['n']} is taken", op["n"]))
            return False
        n = 1
        while irc_lower(f"Guest{n}") in self.users:
            n += 1
        op["n"] = f"Guest{n}"
        return True

    def begin_sync(self, publish: Callable[[Op], None], now: float) -> Op:
        """The log is back: ops go to it again; events are held until ``load_snapshot``.

        Returns the ``restore`` op, to be sent before the snapshot is asked
        for: this server's users, their nicknames and rooms, and what the
        rooms they are in remember (topic, recent lines), so that the shared
        state has them again (after a Redis restart, it has nothing).
        """
        self.publish = publish
        self.held = []
        users = []
        rooms: dict[str, Any] = {}
        for user in self.local.values():
            entry = {"u": user.uid, "n": user.nick, "k": irc_lower(user.nick), "un": user.ident.username,
                     "h": user.ident.host, "rn": user.realname, "on": self._at(user.signon), "sid": self.sid,
                     "rooms": [[room.name, key] for key, room in user.rooms.items()]}
            users.append(entry)
            for key, room in user.rooms.items():
                if key not in rooms:
                    rooms[key] = {"name": room.name, "topic": room.topic, "by": room.topic_by,
                                  "tat": self._at(room.topic_at),
                                  "history": [json.dumps(_line_op(line), ensure_ascii=False) for line in room.history]}
        return {"t": "restore", "sid": self.sid, "users": users, "rooms": rooms, "at": self._at(now)}

    def load_snapshot(self, snapshot: list[Any], now: float) -> None:
        """Rebuild the replica from the shared state (``[seq, users, rooms]``, see backplane's
        script), tell our users what changed, then apply the events held since."""
        seq, flat_users, rooms = snapshot
        before_members = {key: [getattr(u, "uid", "") for u in room.members.values()]
                          for key, room in self.rooms.items()}
        before_idents = {uid: user.ident for uid, user in self.by_uid.items()}
        # Users.
        by_uid: dict[str, SharedUser] = {}
        self.users = {}
        renamed_locals: list[tuple[SharedUser, str, str]] = []
        for i in range(0, len(flat_users), 2):
            uid, info = _text(flat_users[i]), json.loads(flat_users[i + 1])
            nick = info["n"]
            user = self.by_uid.get(uid)
            if user is None:
                if uid.startswith(self._uid_prefix):
                    continue  # ours, and gone: its quit is on its way to the log
                user = SharedUser(uid, Ident(nick, info.get("un") or nick, info.get("h", "")), _drop,
                                  float(info.get("on", now)), info.get("rn") or nick, local=False)
            elif user.local:
                user.confirmed = True
                if user.nick != nick:
                    renamed_locals.append((user, user.nick, nick))
            user.ident = Ident(nick, user.ident.username, user.ident.host)
            user.joined.clear()
            by_uid[uid] = user
            self.users[irc_lower(nick)] = user
        for uid, user in self.by_uid.items():  # ours, still here, but not in the shared state: keep them
            if user.local and uid not in by_uid:
                by_uid[uid] = user
                user.joined.clear()
                self.users.setdefault(irc_lower(user.nick), user)
        self.by_uid = by_uid
        # Rooms: the same Room objects where there were (users' intents point at them).
        old_rooms, self.rooms = self.rooms, {}
        for entry in rooms:
            key, name, topic, by, tat, members, history = (
                _text(entry[0]), _text(entry[1]), _text(entry[2]), _text(entry[3]), entry[4], entry[5], entry[6])
            room = old_rooms.get(key) or Room(name, self.history_lines, self.history_bytes)
            room.name, room.topic, room.topic_by = name, topic, by
            room.topic_at = float(_text(tat) or 0.0)
            room.members = {}
            for uid_raw in members:
                user = self.by_uid.get(_text(uid_raw))
                if user is not None:
                    room.members[irc_lower(user.nick)] = user
                    user.joined[key] = room
            room.history.clear()
            room.history_bytes = 0
            for raw in history:
                line = _line_event(json.loads(raw), name)
                if line is not None:
                    room.remember(line)
            self.rooms[key] = room
        default = irc_lower(self.default_room)
        if default not in self.rooms:
            self.rooms[default] = old_rooms.get(default) or Room(self.default_room, self.history_lines,
                                                                 self.history_bytes)
            self.rooms[default].members = {}
        for user in self.local.values():  # intents keep their rooms alive
            for key, room in list(user.rooms.items()):
                user.rooms[key] = self.rooms.setdefault(key, room)
        self.seq = int(seq)
        if self.outage is not None:
            self.outage = None
            self.announce(RESTORED, now)
        self._tell_differences(before_members, before_idents, renamed_locals, now)
        held, self.held = self.held or [], None
        for event in held:
            if event.get("s", 0) > self.seq:
                self.seq = event["s"]
                self.apply(event)

    def _tell_differences(self, before_members: dict[str, list[str]], before_idents: dict[str, Ident],
                          renamed_locals: list[tuple[SharedUser, str, str]], now: float) -> None:
        for user, wanted, nick in renamed_locals:
            old = Ident(wanted, user.ident.username, user.ident.host)
            user.sink(Renamed(old, nick, now))
            user.sink(Notice(f"nickname {wanted} was taken while the servers were apart; you are now {nick}", now))
        for user in self.local_users():
            told: set[str] = set()
            for key, room in user.joined.items():
                was_there = before_members.get(key, [])
                new = [getattr(u, "uid", "") for u in room.members.values()]
                for uid in new:
                    if uid == user.uid or uid in told:
                        continue
                    other = self.by_uid[uid]
                    was = before_idents.get(uid)
                    if was is not None and was.nick != other.nick:
                        told.add(uid)
                        user.sink(Renamed(was, other.nick, now))
                    if uid not in was_there:
                        user.sink(Joined(room.name, other.ident, now))
                for uid in was_there:
                    if uid == user.uid or uid in new or uid not in before_idents:
                        continue
                    if uid not in self.by_uid:
                        if uid not in told:
                            told.add(uid)
                            user.sink(Quit(before_idents[uid], "lost while the servers were apart", now))
                    else:
                        user.sink(Left(room.name, before_idents[uid], "", now))


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else ("" if value is None else str(value))


def _line_op(line: Union[Said, Emote]) -> Op:
    return {"t": "say" if isinstance(line, Said) else "me", "n": line.who.nick, "un": line.who.username,
            "h": line.who.host, "x": line.text, "at": round(line.at, 3)}


def _line_event(entry: Op, room: str) -> Optional[Union[Said, Emote]]:
    who = Ident(entry.get("n", "?"), entry.get("un", ""), entry.get("h", ""))
    at = float(entry.get("at", 0.0))
    if entry.get("t") == "say":
        return Said(room, who, entry.get("x", ""), at)
    if entry.get("t") == "me":
        return Emote(room, who, entry.get("x", ""), at)
    return None


_APPLY: dict[str, Callable[[SharedChat, Op], None]] = {
    "reg": SharedChat._apply_reg,
    "nick": SharedChat._apply_nick,
    "join": SharedChat._apply_join,
    "part": SharedChat._apply_part,
    "say": SharedChat._apply_line,
    "me": SharedChat._apply_line,
    "topic": SharedChat._apply_topic,
    "rnotice": SharedChat._apply_rnotice,
    "quit": SharedChat._apply_quit,
    "msg": SharedChat._apply_msg,
    "unotice": SharedChat._apply_msg,
}
