"""The Redis backplane: chat servers sharing rooms through Redis pub/sub (``--redis redis://...``).

Theory of operation
-------------------
Redis is the log that gives every server the same order (``shared`` says
why that is enough). Two connections per server (``resp.RespConnection``):

- **commands**: every op of ``SharedChat`` is one ``EVALSHA`` of the Lua
  script below. Redis runs a script atomically, so each op checks the
  shared state (is that nickname free? is this user in that room?),
  changes it (hashes, sorted sets, the capped history list), takes the
  next sequence number (``INCR``) and ``PUBLISH``es the event, all at one
  point in Redis's single order of execution. The reply is ``ok`` or why
  not (``taken``, ``notin`` ...), which goes back to the author.
- **subscriptions**: each room is a channel (``<prefix>:room:<room>``,
  all of them through one ``PSUBSCRIBE``), plus one for nickname changes,
  registrations and quits (``<prefix>:users``) and one for private
  messages to this server's users (``<prefix>:server:<id>``). Redis
  appends each published message to every subscriber's connection in the
  order the scripts ran, across channels: every server reads the same
  sequence, including its own users' events, and delivers it to its users.

Shared state (all under ``<prefix>``, the prefix naming the Redis database
too, since pub/sub channels are not per database): ``users`` (uid ->
JSON), ``nicks`` (nickname key -> uid: uniqueness), ``rooms``,
``room:<key>`` (name, topic), ``members:<key>`` (a sorted set in join
order), ``history:<key>`` (a list, ``LTRIM``-capped), ``urooms:<uid>``,
``servers``, ``susers:<id>`` (each server's users), ``alive:<id>``.

**Servers that die.** Every second each server runs the heartbeat op: it
refreshes its own ``alive:<id>`` key (which expires after ``alive_ttl``)
and removes every server whose key has expired or which has nobody
subscribed to its private channel any more (``PUBSUB NUMSUB``: the
connection of a killed process is closed by its kernel, so this is seen
within a second): their users quit, with the reason "server gone", their
nicknames are free again. The script runs atomically, so two servers
cannot both do it.

**Redis going away** (a restart, a network failure, no reply within
``timeout``, more than ``max_pending`` commands waiting or ``max_buffer``
bytes unsent: a slow Redis never blocks the loop nor fills our memory):
both connections are dropped, the chat goes to local mode (its users keep
talking to each other, and are told so once), and connecting starts again
after a backoff (0.1 s, doubling, at most 5 s). Once both connections are
up again: subscribe (and wait for Redis to confirm), load the script, send
the ``restore`` op (this server's users and rooms, so that a Redis that
restarted empty has them again, and the others see them come back), which
answers with a snapshot of the whole shared state taken in the same atomic
step (so its sequence number is exactly where our subscription's events
take over), and resume.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import socket
import time
from typing import Any, Callable, Optional

from ..resp import Backoff, RedisAddress, RedisDown, RedisError, RespConnection
from .core import irc_lower
from .shared import Op, SharedChat

__all__ = ["Backplane", "SCRIPT", "server_id", "prefix_for"]

log = logging.getLogger("demos.chat.backplane")

HEARTBEAT = 1.0  # seconds between heartbeats (and checks for dead servers)
ALIVE_TTL = 5.0  # a server silent this long is taken for dead

SCRIPT = r"""
-- The chat's shared state, changed only here. ARGV: prefix, op (JSON), history lines, default room key.
local p, op, hl, default = ARGV[1], cjson.decode(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local USERS, NICKS, ROOMS = p .. ':users', p .. ':nicks', p .. ':rooms'

local function user_of(uid)
  local raw = redis.call('HGET', USERS, uid)
  if raw then return cjson.decode(raw) end
  return nil
end

local function publish(channel, ev, u, history)
  ev.s = redis.call('INCR', p .. ':seq')
  if u then ev.n = ev.n or u.n; ev.un = u.un; ev.h = u.h end
  local data = cjson.encode(ev)
  if history and hl > 0 then
    redis.call('RPUSH', history, data)
    redis.call('LTRIM', history, -hl, -1)
  end
  redis.call('PUBLISH', p .. channel, data)
  return ev.s
end

local function tidy(rk)
  if rk ~= default and redis.call('ZCARD', p .. ':members:' .. rk) == 0 then
    redis.call('DEL', p .. ':room:' .. rk, p .. ':history:' .. rk, p .. ':members:' .. rk)
    redis.call('SREM', ROOMS, rk)
  end
end

local function reg(e, at, o)
  if redis.call('HEXISTS', USERS, e.u) == 1 then return 'ok' end
  local nick, key = e.n, e.k
  if redis.call('HEXISTS', NICKS, key) == 1 then
    nick = nil
    for _ = 1, 50 do
      local g = redis.call('INCR', p .. ':guest')
      if redis.call('HEXISTS', NICKS, 'guest' .. g) == 0 then nick, key = 'Guest' .. g, 'guest' .. g; break end
    end
    if not nick then return 'taken' end
  end
  local u = {n = nick, k = key, un = e.un, h = e.h, rn = e.rn, on = e.on, sid = e.sid}
  redis.call('HSET', NICKS, key, e.u)
  redis.call('HSET', USERS, e.u, cjson.encode(u))
  redis.call('SADD', p .. ':susers:' .. e.sid, e.u)
  publish(':users', {t = 'reg', u = e.u, n = nick, rn = e.rn, on = e.on, at = at, o = o}, u)
  return 'ok'
end

local function nick(e, at, o)
  local u = user_of(e.u)
  if not u then return 'nouser' end
  if u.n == e.n then return 'ok' end
  if u.k ~= e.k then
    if redis.call('HEXISTS', NICKS, e.k) == 1 then return 'taken' end
    redis.call('HDEL', NICKS, u.k)
    redis.call('HSET', NICKS, e.k, e.u)
  end
  u.n, u.k = e.n, e.k
  redis.call('HSET', USERS, e.u, cjson.encode(u))
  publish(':users', {t = 'nick', u = e.u, at = at, o = o}, u)
  return 'ok'
end

local function join(uid, name, rk, at, o)
  local u = user_of(uid)
  if not u then return 'nouser' end
  local members = p .. ':members:' .. rk
  if redis.call('ZSCORE', members, uid) then return 'already' end
  local room = p .. ':room:' .. rk
  local spelt = redis.call('HGET', room, 'name')
  if not spelt then
    spelt = name
    redis.call('HSET', room, 'name', name)
    redis.call('SADD', ROOMS, rk)
  end
  local ev = {t = 'join', u = uid, r = spelt, rk = rk, at = at, o = o}
  local s = publish(':room:' .. rk, ev, u)
  redis.call('ZADD', members, s, uid)
  redis.call('SADD', p .. ':urooms:' .. uid, rk)
  return 'ok'
end

local function part(uid, rk, why, at, o)
  local u = user_of(uid)
  if not u then return 'nouser' end
  if not redis.call('ZSCORE', p .. ':members:' .. rk, uid) then return 'notin' end
  redis.call('ZREM', p .. ':members:' .. rk, uid)
  redis.call('SREM', p .. ':urooms:' .. uid, rk)
  publish(':room:' .. rk, {t = 'part', u = uid, rk = rk, why = why, at = at, o = o}, u)
  tidy(rk)
  return 'ok'
end

local function quit(uid, why, at, o)
  local u = user_of(uid)
  if not u then return 'nouser' end
  local rooms = redis.call('SMEMBERS', p .. ':urooms:' .. uid)
  for _, rk in ipairs(rooms) do redis.call('ZREM', p .. ':members:' .. rk, uid) end
  redis.call('DEL', p .. ':urooms:' .. uid)
  redis.call('HDEL', USERS, uid)
  if redis.call('HGET', NICKS, u.k) == uid then redis.call('HDEL', NICKS, u.k) end
  redis.call('SREM', p .. ':susers:' .. u.sid, uid)
  publish(':users', {t = 'quit', u = uid, why = why, at = at, o = o}, u)
  for _, rk in ipairs(rooms) do tidy(rk) end
  return 'ok'
end

local function member(uid, rk)
  local u = user_of(uid)
  if not u then return nil, 'nouser' end
  if not redis.call('ZSCORE', p .. ':members:' .. rk, uid) then return nil, 'notin' end
  return u
end

local function snapshot()
  local rooms = {}
  for _, rk in ipairs(redis.call('SMEMBERS', ROOMS)) do
    local r = p .. ':room:' .. rk
    local topic = redis.call('HMGET', r, 'name', 'topic', 'by', 'tat')
    table.insert(rooms, {rk, topic[1] or rk, topic[2] or '', topic[3] or '', topic[4] or '0',
                         redis.call('ZRANGE', p .. ':members:' .. rk, 0, -1),
                         redis.call('LRANGE', p .. ':history:' .. rk, 0, -1)})
  end
  return {tonumber(redis.call('GET', p .. ':seq') or '0'), redis.call('HGETALL', USERS), rooms}
end

local function reap(sid, why, at)
  for _, uid in ipairs(redis.call('SMEMBERS', p .. ':susers:' .. sid)) do quit(uid, why, at, nil) end
  redis.call('DEL', p .. ':susers:' .. sid, p .. ':alive:' .. sid)
  redis.call('SREM', p .. ':servers', sid)
end

local t, at, o = op.t, op.at, op.o
if t == 'reg' then return reg(op, at, o)
elseif t == 'nick' then return nick(op, at, o)
elseif t == 'join' then return join(op.u, op.r, op.rk, at, o)
elseif t == 'part' then return part(op.u, op.rk, op.why, at, o)
elseif t == 'quit' then return quit(op.u, op.why, at, o)
elseif t == 'say' or t == 'me' or t == 'topic' or t == 'rnotice' then
  local u, err = member(op.u, op.rk)
  if not u then return err end
  local history = nil
  if t == 'say' or t == 'me' then history = p .. ':history:' .. op.rk end
  if t == 'topic' then
    redis.call('HSET', p .. ':room:' .. op.rk, 'topic', op.x, 'by', u.n, 'tat', tostring(at))
  end
  publish(':room:' .. op.rk, {t = t, u = op.u, rk = op.rk, x = op.x, at = at, o = o}, u, history)
  return 'ok'
elseif t == 'msg' or t == 'unotice' then
  local u = user_of(op.u)
  local target = user_of(op.to)
  if not u then return 'nouser' end
  if not target then return 'nosuchnick' end
  publish(':server:' .. target.sid, {t = t, u = op.u, to = op.to, x = op.x, act = op.act, at = at, o = o}, u)
  return 'ok'
elseif t == 'heartbeat' then
  redis.call('SET', p .. ':alive:' .. op.sid, '1', 'PX', op.ttl)
  redis.call('SADD', p .. ':servers', op.sid)
  local reaped = {}
  for _, sid in ipairs(redis.call('SMEMBERS', p .. ':servers')) do
    if sid ~= op.sid then
      local listening = redis.call('PUBSUB', 'NUMSUB', p .. ':server:' .. sid)[2]
      if redis.call('EXISTS', p .. ':alive:' .. sid) == 0 or listening == 0 then
        local n = redis.call('SCARD', p .. ':susers:' .. sid)
        reap(sid, 'server gone', at)
        table.insert(reaped, sid .. ' ' .. n)
      end
    end
  end
  return reaped
elseif t == 'bye' then
  reap(op.sid, op.why, at)
  return 'ok'
elseif t == 'restore' then
  redis.call('SET', p .. ':alive:' .. op.sid, '1', 'PX', op.ttl)
  redis.call('SADD', p .. ':servers', op.sid)
  local ours = {}
  for _, e in ipairs(op.users) do
    ours[e.u] = true
    if reg(e, at, nil) == 'ok' then
      nick(e, at, nil)
      local wanted = {}
      for _, r in ipairs(e.rooms) do wanted[r[2]] = true end
      for _, rk in ipairs(redis.call('SMEMBERS', p .. ':urooms:' .. e.u)) do
        if not wanted[rk] then part(e.u, rk, '', at, nil) end
      end
      for _, r in ipairs(e.rooms) do join(e.u, r[1], r[2], at, nil) end
    end
  end
  for _, uid in ipairs(redis.call('SMEMBERS', p .. ':susers:' .. op.sid)) do
    if not ours[uid] then quit(uid, 'gone', at, nil) end
  end
  for rk, r in pairs(op.rooms) do
    local room = p .. ':room:' .. rk
    if redis.call('EXISTS', room) == 1 then
      if r.topic ~= '' and not redis.call('HGET', room, 'topic') then
        redis.call('HSET', room, 'topic', r.topic, 'by', r.by, 'tat', tostring(r.tat))
      end
      local history = p .. ':history:' .. rk
      if hl > 0 and #r.history > 0 and redis.call('LLEN', history) == 0 then
        for _, line in ipairs(r.history) do redis.call('RPUSH', history, line) end
        redis.call('LTRIM', history, -hl, -1)
      end
    end
  end
  return snapshot()  -- in the same atomic step: the state right after our users came back
end
return 'unknown op ' .. tostring(t)
"""
SCRIPT_SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()


def server_id() -> str:
    """This server's id among the others: host, pid and a random part (readable in ``redis-cli``)."""
    host = re.sub(r"[^A-Za-z0-9.-]", "", socket.gethostname())[:24] or "host"
    return f"{host}:{os.getpid()}:{secrets.token_hex(3)}"


def prefix_for(address: RedisAddress, base: str = "reactor-chat") -> str:
    return f"{base}:{address.db}"


class Backplane:
    """Connects a ``SharedChat`` to Redis and keeps it connected (see the module docstring)."""

    def __init__(self, reactor: Any, chat: SharedChat, address: RedisAddress, *, prefix: Optional[str] = None,
                 timeout: float = 5.0, heartbeat: float = HEARTBEAT, alive_ttl: float = ALIVE_TTL,
                 max_pending: int = 100_000, max_buffer: int = 8 * 1024 * 1024,
                 clock: Callable[[], float] = time.time, backoff: Optional[Backoff] = None) -> None:
        self.reactor = reactor
        self.chat = chat
        self.address = address
        self.prefix = prefix or prefix_for(address)
        self.timeout = timeout
        self.heartbeat = heartbeat
        self.alive_ttl = max(alive_ttl, 3 * heartbeat)
        self.max_pending = max_pending
        self.max_buffer = max_buffer
        self.clock = clock
        self.backoff = backoff or Backoff()
        self.state = "down"  # down -> connecting -> syncing -> up; closed at the end
        self.cmd: Optional[RespConnection] = None
        self.sub: Optional[RespConnection] = None
        self._ready = 0  # connections through their handshake, subscriptions, script
        self._timer: Any = None
        self._attempt_failed_logged = False
        self.outages = 0
        self.syncs = 0
        self._history = str(chat.history_lines)
        self._default = irc_lower(chat.default_room)
        chat.on_out_of_sync = self._out_of_sync
        self._channels = [f"{self.prefix}:users", f"{self.prefix}:server:{chat.sid}"]
        self._pattern = f"{self.prefix}:room:*"

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        self._connect()

    def _connect(self) -> None:
        self._timer = None
        if self.state == "closed":
            return
        self.state = "connecting"
        self._ready = 0
        common = dict(timeout=self.timeout, max_pending=self.max_pending, max_buffer=self.max_buffer,
                      on_lost=self._lost)
        self.cmd = RespConnection(self.reactor, self.address, name=f"chat-{self.chat.sid}-cmd".replace(" ", ""),
                                  on_ready=self._cmd_ready, **common)  # type: ignore[arg-type]
        self.sub = RespConnection(self.reactor, self.address, name=f"chat-{self.chat.sid}-sub".replace(" ", ""),
                                  on_ready=self._sub_ready, on_message=self._message, **common)  # type: ignore[arg-type]
        self.cmd.connect()
        self.sub.connect()

    def _cmd_ready(self) -> None:
        assert self.cmd is not None
        self.cmd.call("SCRIPT", "LOAD", SCRIPT, callback=self._loaded)

    def _loaded(self, reply: Any) -> None:
        if isinstance(reply, RedisDown):
            return
        if isinstance(reply, RedisError) or reply != SCRIPT_SHA.encode():
            self._fail(f"cannot load the chat's script into Redis: {reply!r:.200}")
            return
        self._one_ready()

    def _sub_ready(self) -> None:
        assert self.sub is not None
        confirmed: list[Any] = []

        def subscribed(reply: Any) -> None:
            confirmed.append(reply)
            if isinstance(reply, RedisError):
                if not isinstance(reply, RedisDown):
                    self._fail(f"Redis refused to subscribe: {reply}")
            elif len(confirmed) == 3:
                self._one_ready()

        self.sub.call_many([("SUBSCRIBE", self._channels[0]), ("SUBSCRIBE", self._channels[1]),
                            ("PSUBSCRIBE", self._pattern)], [subscribed] * 3)

    def _one_ready(self) -> None:
        self._ready += 1
        if self._ready == 2 and self.state == "connecting":
            self._sync()

    def _sync(self) -> None:
        """Both connections are ready (subscribed, script loaded): restore our users, snapshot, resume."""
        self.state = "syncing"
        self.syncs += 1
        restore = self.chat.begin_sync(self._publish, self.clock())
        restore["ttl"] = int(self.alive_ttl * 1000)
        self._eval(restore, self._snapshot)  # the reply is the snapshot taken right after

    def _snapshot(self, reply: Any) -> None:
        if isinstance(reply, RedisDown):
            return
        if isinstance(reply, RedisError) or not isinstance(reply, list):
            self._fail(f"no snapshot from Redis: {reply!r:.200}")
            return
        was_out = self.outages > 0 and self.chat.outage is not None
        self.chat.load_snapshot(reply, self.clock())
        self.state = "up"
        self.backoff.reset()
        self._attempt_failed_logged = False
        if was_out:
            log.warning("backplane: back in touch with Redis at %s; users restored", self.address)
        else:
            log.info("backplane: sharing rooms through Redis at %s as server %s", self.address, self.chat.sid)
        self._timer = self.reactor.call_later(self.heartbeat, self._beat)

    # -- ops --------------------------------------------------------------------------

    def _eval(self, op: Op, callback: Callable[[Any], None]) -> None:
        assert self.cmd is not None
        self.cmd.call("EVALSHA", SCRIPT_SHA, 0, self.prefix, json.dumps(op, ensure_ascii=False, separators=(",", ":")),
                      self._history, self._default, callback=callback)

    def _publish(self, op: Op) -> None:
        """``SharedChat.publish``: send *op*; its event comes back through the subscription."""
        try:
            self._eval(op, lambda reply: self._replied(op, reply))
        except RedisDown as exc:
            self._down(exc)

    def _replied(self, op: Op, reply: Any) -> None:
        if reply == b"ok" or isinstance(reply, RedisDown):
            return
        if isinstance(reply, RedisError):  # the script itself failed (NOSCRIPT after a SCRIPT FLUSH ...)
            self._fail(f"Redis failed the chat's script: {reply}")
            return
        self.chat.reject(op, reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply))

    def _message(self, channel: bytes, data: bytes) -> None:
        if self.state not in ("syncing", "up"):
            log.debug("backplane: %s before the sync: %.200r", self.state, data)
            return  # before the sync: the snapshot will have it
        try:
            self.chat.receive(data)
        except Exception:  # a malformed message must not cut the others off
            log.exception("backplane: cannot apply a message from %r: %.200r", channel, data)

    def _beat(self) -> None:
        self._timer = None
        if self.state != "up":
            return
        try:
            self._eval({"t": "heartbeat", "sid": self.chat.sid, "ttl": int(self.alive_ttl * 1000),
                        "at": round(self.clock(), 3)}, self._beaten)
        except RedisDown as exc:
            self._down(exc)
            return
        self._timer = self.reactor.call_later(self.heartbeat, self._beat)

    def _beaten(self, reply: Any) -> None:
        if isinstance(reply, RedisDown):
            return
        if isinstance(reply, RedisError):
            self._fail(f"Redis failed the heartbeat: {reply}")
            return
        for entry in reply or []:
            sid, _, users = entry.decode("utf-8", "replace").rpartition(" ")
            log.warning("backplane: server %s is gone (its %s user(s) quit)", sid, users)

    # -- failures ---------------------------------------------------------------------

    def _down(self, exc: RedisDown) -> None:
        """A command could not be sent: the connection is going, and its ``on_lost``
        will say why (a better reason than ours); fail now only if it will not."""
        if self.cmd is None or self.cmd.finished or self.cmd.on_lost is None:
            self._fail(str(exc))

    def _lost(self, exc: BaseException) -> None:
        self._fail(str(exc) or type(exc).__name__)

    def _out_of_sync(self, why: str) -> None:
        log.warning("backplane: out of step with Redis (%s); syncing again", why)
        self._fail(why, retry_now=True)

    def _fail(self, why: str, retry_now: bool = False) -> None:
        if self.state in ("closed", "down"):
            return
        was = self.state
        self.state = "down"
        for conn in (self.cmd, self.sub):
            if conn is not None:
                conn.on_lost = None
                conn.abort(RedisDown(why))
        self.cmd = self.sub = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if was in ("up", "syncing"):
            if self.chat.outage is None:
                self.outages += 1
                log.warning("backplane: lost Redis at %s (%s); serving this server's users alone and "
                            "reconnecting", self.address, why)
            else:
                log.debug("backplane: lost Redis again (%s)", why)
            self._attempt_failed_logged = True  # the attempts that follow are part of this outage
            self.chat.go_local(why, self.clock())
        elif not self._attempt_failed_logged:
            self._attempt_failed_logged = True
            if self.chat.outage is None:
                self.outages += 1
                self.chat.go_local(why, self.clock())
            log.warning("backplane: cannot reach Redis at %s (%s); serving this server's users alone and "
                        "retrying", self.address, why)
        else:
            log.debug("backplane: still cannot reach Redis (%s)", why)
        delay = 0.0 if retry_now else self.backoff.next()
        self._timer = self.reactor.call_later(delay, self._connect)

    def close(self) -> None:
        """Leave the shared chat: our users' entries go (the others see them quit), connections close."""
        if self.state == "closed":
            return
        if self.state == "up" and self.cmd is not None:
            try:
                self._eval({"t": "bye", "sid": self.chat.sid, "why": "server shutdown",
                            "at": round(self.clock(), 3)}, lambda reply: None)
            except RedisDown:
                pass
        self.state = "closed"
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for conn in (self.cmd, self.sub):
            if conn is not None:
                conn.on_lost = None
                conn.close()

    def flushed(self) -> bool:
        """After ``close()``: is everything written (both connections gone)?"""
        return all(conn is None or conn.finished for conn in (self.cmd, self.sub))


# -- the command line (demos/chat/server.py) -----------------------------------------------

def add_options(parser: Any) -> None:
    """``--redis``, ``--redis-timeout`` and ``--workers`` for the chat server."""
    from ..cli import positive_float
    from ..workers import add_workers_option

    parser.add_argument("--redis", metavar="URL",
                        help="share rooms with every chat server using this Redis "
                             "(redis://[:password@]host:port/db; needs the hiredis package)")
    parser.add_argument("--redis-timeout", type=positive_float, default=5.0, metavar="SECONDS",
                        help="with --redis: a Redis that answers nothing this long is taken for gone "
                             "(default: %(default)s)")
    add_workers_option(parser)


def check_options(args: Any) -> Optional[str]:
    """One line saying what is wrong with ``--redis``/``--workers``, or None.

    Checks, in the process that the user started, that a Redis answers at
    the URL: a typo is an error at start, not a server alone that retries.
    """
    from ..resp import hiredis_missing, parse_url, probe
    from ..workers import check_workers, is_worker

    problem = check_workers(args)
    if problem:
        return problem
    if args.workers is not None and not is_worker():
        if args.workers > 1 and not args.redis:
            return ("--workers needs --redis: each worker has its own users, and they share rooms through "
                    "Redis (e.g. --redis redis://127.0.0.1:6379/0)")
        if getattr(args, "monitor", None) is not None:
            return "--monitor serves one process; it cannot be combined with --workers"
    if not args.redis:
        return None
    try:
        address = parse_url(args.redis)
    except ValueError as exc:
        return f"--redis: {exc}"
    missing = hiredis_missing()
    if missing:
        return missing
    if not is_worker():
        trouble = probe(address, timeout=min(args.redis_timeout, 5.0))
        if trouble:
            return f"cannot use Redis at {address.host}:{address.port}: {trouble} (is redis-server running?)"
    return None


def make_chat(args: Any, history_lines: int, history_bytes: int) -> Optional[SharedChat]:
    """A ``SharedChat`` when ``--redis`` is given, else None (the plain ``Chat``)."""
    if not args.redis:
        return None
    return SharedChat(server_id(), history_lines=history_lines, history_bytes=history_bytes)


def start(reactor: Any, chat: Any, args: Any) -> Optional[Backplane]:
    if not isinstance(chat, SharedChat):
        return None
    from ..resp import parse_url

    plane = Backplane(reactor, chat, parse_url(args.redis), timeout=args.redis_timeout)
    plane.start()
    return plane


def finish(reactor: Any, plane: Optional[Backplane], timeout: float = 2.0) -> None:
    """After the loop stopped: say goodbye to Redis and let the last bytes go (at most *timeout* s)."""
    if plane is None:
        return
    plane.close()
    deadline = time.monotonic() + timeout
    while not plane.flushed() and time.monotonic() < deadline:
        reactor.run_once(0.05)
