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
- ``logs``: logging that cannot block the loop
- ``server``: options, listeners, shutdown (``python -m demos.chat_server``)
- ``client``: the terminal client (``python -m demos.chat_client``), with
  ``tui`` for its curses screen

A new door (WebSocket, say) is a parser and a renderer on ``door.Door``,
or, on another transport, anything that drives a ``session.Session``: see
the docstring of ``core``.
"""
