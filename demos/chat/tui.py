"""The chat client's split screen, with the standard library's ``curses``.

Theory of operation
-------------------
The screen has three parts::

    <bob> hello                          messages: scroll up, newest at the bottom
    * carol waves
    ...
     alice | #lobby | connected to 127.0.0.1:7000     status line (reverse video)
    > what I am typing, intact                          input line

Lines that arrive are appended to a bounded list (``MAX_LINES``) and the
message area is redrawn from its end; the input line is drawn last and the
cursor put back on it, so a message arriving mid-word never splices into
what the user is typing (what the line-based mode cannot avoid).

Input: the loop watches the terminal's file descriptor with ``add_reader``
and, when it is readable, takes every key waiting with ``get_wch()`` in
no-delay mode (curses decodes UTF-8 and the escape sequences of special
keys). A resize (SIGWINCH, through the loop's signal handling) redraws
at once. Enter sends the line; Backspace, Delete, Left, Right, Home, End,
Ctrl-U (clear), Ctrl-L (redraw) edit it; Ctrl-D on an empty line ends the
input, like end of file in the line mode; Ctrl-C is still SIGINT.
"""

from __future__ import annotations

import curses
import locale
import os
import signal
from collections import deque
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:  # pragma: no cover
    from .client import ChatClient

MAX_LINES = 2000
PROMPT = "> "


def wrap(text: str, width: int) -> list[str]:
    """*text* cut into rows of at most *width* characters (at least one row)."""
    if width <= 0:
        return [text]
    return [text[i:i + width] for i in range(0, len(text), width)] or [""]


class CursesUI:
    def __init__(self, reactor: Any, fd: int) -> None:
        self.reactor = reactor
        self.fd = fd
        self.lines: deque[str] = deque(maxlen=MAX_LINES)
        self.buffer: list[str] = []
        self.cursor = 0
        self.status_text = ""
        self.screen: Any = None
        self.client: Optional["ChatClient"] = None
        self._input_open = True

    # -- lifecycle ------------------------------------------------------------

    def start(self, client: "ChatClient") -> None:
        self.client = client
        locale.setlocale(locale.LC_ALL, "")  # so that curses reads and writes UTF-8
        # curses believes $LINES and $COLUMNS over the terminal; exported, they
        # are stale (a shell keeps them up to date only for itself).
        os.environ.pop("LINES", None)
        os.environ.pop("COLUMNS", None)
        self.screen = curses.initscr()
        curses.noecho()
        curses.cbreak()  # keys as they come; Ctrl-C still sends SIGINT
        self.screen.keypad(True)
        self.screen.nodelay(True)
        self.reactor.add_reader(self.fd, self.on_input)
        # curses learns of a resize only when a key is read; the loop hears
        # the signal itself and redraws at once (replacing curses' handler).
        self.reactor.add_signal_handler(signal.SIGWINCH, self.resized)
        self.redraw()

    def resized(self) -> None:
        if self.screen is None:
            return
        try:
            size = os.get_terminal_size(self.fd)
        except OSError:
            return
        curses.resizeterm(size.lines, size.columns)
        self.redraw()

    def stop(self) -> None:
        if self.screen is None:
            return
        if self._input_open:
            self.reactor.remove_reader(self.fd)
            self._input_open = False
        self.reactor.remove_signal_handler(signal.SIGWINCH)
        self.screen.keypad(False)
        curses.nocbreak()
        curses.echo()
        curses.endwin()
        self.screen = None
        for line in list(self.lines)[-5:]:  # the end of the conversation stays visible
            print(line)

    # -- output ---------------------------------------------------------------

    def show(self, text: str) -> None:
        self.lines.append(text)
        if self.screen is not None:
            self.draw_messages()
            self.draw_input()

    def status(self, nick: str, room: str, state: str) -> None:
        self.status_text = f" {nick} | {room} | {state} "
        if self.screen is not None:
            self.draw_status()
            self.draw_input()

    def redraw(self) -> None:
        self.screen.clear()
        self.draw_messages()
        self.draw_status()
        self.draw_input()

    def draw_messages(self) -> None:
        height, width = self.screen.getmaxyx()
        rows = height - 2
        if rows <= 0:
            return
        shown: list[str] = []
        for line in reversed(self.lines):
            shown[:0] = wrap(line, width)
            if len(shown) >= rows:
                break
        shown = shown[-rows:]
        top = rows - len(shown)
        for y in range(rows):
            self.screen.move(y, 0)
            self.screen.clrtoeol()
            if y >= top:
                self._put(y, shown[y - top], width)

    def draw_status(self) -> None:
        height, width = self.screen.getmaxyx()
        if height < 2:
            return
        self._put(height - 2, self.status_text.ljust(width)[:width], width, curses.A_REVERSE)

    def draw_input(self) -> None:
        height, width = self.screen.getmaxyx()
        room = width - len(PROMPT) - 1  # never the last column: curses cannot write there
        if height < 1 or room <= 0:
            return
        offset = max(0, self.cursor - room)
        visible = "".join(self.buffer[offset:offset + room])
        self.screen.move(height - 1, 0)
        self.screen.clrtoeol()
        self._put(height - 1, PROMPT + visible, width - 1)
        self.screen.move(height - 1, len(PROMPT) + self.cursor - offset)
        self.screen.refresh()

    def _put(self, y: int, text: str, width: int, attr: int = 0) -> None:
        try:
            self.screen.addnstr(y, 0, text, width, attr)
        except curses.error:  # the bottom-right corner, or a terminal too small
            pass

    # -- input ----------------------------------------------------------------

    def on_input(self) -> None:
        while self.screen is not None:
            try:
                key = self.screen.get_wch()
            except curses.error:
                return  # nothing more waiting
            self.key(key)

    def key(self, key: Any) -> None:
        assert self.client is not None
        if key in ("\n", "\r", curses.KEY_ENTER):
            self.submit()
        elif key in ("\x7f", "\b", curses.KEY_BACKSPACE):
            if self.cursor > 0:
                self.cursor -= 1
                del self.buffer[self.cursor]
        elif key == curses.KEY_DC:
            if self.cursor < len(self.buffer):
                del self.buffer[self.cursor]
        elif key == curses.KEY_LEFT:
            self.cursor = max(0, self.cursor - 1)
        elif key == curses.KEY_RIGHT:
            self.cursor = min(len(self.buffer), self.cursor + 1)
        elif key in (curses.KEY_HOME, "\x01"):
            self.cursor = 0
        elif key in (curses.KEY_END, "\x05"):
            self.cursor = len(self.buffer)
        elif key == "\x15":  # Ctrl-U
            self.buffer, self.cursor = [], 0
        elif key == "\x04" and not self.buffer:  # Ctrl-D on an empty line: end of input
            self.end_input()
            return
        elif key in (curses.KEY_RESIZE, "\x0c"):
            curses.update_lines_cols()
            self.redraw()
            return
        elif isinstance(key, str) and key.isprintable():
            self.buffer.insert(self.cursor, key)
            self.cursor += 1
        self.draw_input()

    def submit(self) -> None:
        assert self.client is not None
        text = "".join(self.buffer)
        self.buffer, self.cursor = [], 0
        self.client.send(text.encode("utf-8") + b"\r\n")
        if text and (not text.startswith("/") or text.startswith("//")) and self.client.room:
            self.show(f"<{self.client.nick}> {text[1:] if text.startswith('//') else text}")  # our own line
        else:
            self.draw_input()

    def end_input(self) -> None:
        assert self.client is not None
        if self._input_open:
            self.reactor.remove_reader(self.fd)
            self._input_open = False
        self.show("[client] end of input: leaving once the server closes")
        self.client.input_ended()
