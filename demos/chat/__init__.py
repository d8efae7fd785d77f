"""The chat demo: one chat, several front doors.

Modules, each importing only from the ones above it:

- ``hygiene``: input cleaning every door uses (telnet filter with the
  timing-mark answer, control characters, line separators, combining marks)
- ``core``: users, rooms, history, and the typed events they produce
  (``Joined``, ``Said``, ``Quit`` ...): no sockets, no loop, no clock
- ``session``: one user's commands, flood control and deadlines, sans-IO
- ``door``: the reactor ``Protocol`` plumbing every door shares
  (framing, delaying floods with ``pause_reading``, one timer, output cap)
- ``line_door``: nc, telnet and the terminal client (``<alice> hi``)
- ``irc_door``: IRC clients (``:alice!~alice@host PRIVMSG #lobby :hi``)
- ``web_messages``: the browser's JSON, to session commands and from events
- ``web_monitor``: one sample of the running loop a second, for ``/reactor``
- ``web_door``: browsers: the page over HTTP (h11), the chat over a
  WebSocket (wsproto); ``web``: its options (``web/``: the page itself)
- ``logs``: logging that cannot block the loop
- ``shared``: the chat as a replica of rooms shared by several servers,
  changed only by events from one ordered log, sans-IO
- ``backplane``: that log on Redis (``--redis``): two connections
  (``demos/resp.py``), one Lua script for every change, heartbeats,
  reconnection; and ``--workers`` for the chat
- ``server``: options, listeners, shutdown (``python -m demos.chat_server``)
- ``client``: the terminal client (``python -m demos.chat_client``), with
  ``tui`` for its curses screen

A new door is a parser and a renderer on ``door.Door``, or, for input
that is not lines (the web door's WebSocket messages), anything that drives
a ``session.Session``: see the docstring of ``core``.
"""
