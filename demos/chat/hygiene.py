"""Input hygiene for every door: what a client sends, made safe to show others.

Theory of operation
-------------------
Whatever a door speaks, the text one user types ends up on other people's
screens, so it passes through the same filters first:

1. ``TelnetFilter`` (line door only) removes telnet commands from the byte
   stream before it is cut into lines. It is resumable (a command split
   across two reads is handled) and bounded. It answers one option:
   ``IAC DO TIMING-MARK`` (RFC 860). Telnet's Ctrl-C sends ``IAC IP`` and
   ``IAC DO TIMING-MARK`` and then *discards all output* until the server
   answers the mark; a server that never answers has silenced that user
   for good. The answer (``IAC WILL TIMING-MARK``) is collected in
   ``replies`` for the door to write.
2. ``clean_line`` (bytes) or ``clean_text`` (str) turns one line into text
   that cannot harm a terminal or a client: invalid UTF-8 becomes U+FFFD;
   ANSI escape sequences and every control or invisible format character
   go (C0, DEL, C1, bidi overrides), except the zero-width (non-)joiner,
   which real text needs; tabs and Unicode line and paragraph separators
   (U+2028, U+2029, which some clients split lines on, so that one line
   could show as a forged second one) become spaces; the text is
   NFC-normalised and a run of combining marks is cut to
   ``MAX_COMBINING`` (enough for Vietnamese or pointed Hebrew; "Zalgo"
   text stacks hundreds on one letter and covers the lines around it).

Everything here is sans-IO: bytes or text in, bytes or text out.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["TelnetFilter", "clean_line", "clean_text", "MAX_COMBINING", "MAX_SUBNEGOTIATION"]

IAC, SB, SE = 255, 250, 240
WILL, WONT, DO, DONT = 251, 252, 253, 254
TIMING_MARK = 6  # RFC 860
CR, LF, NUL = 13, 10, 0
# Real subnegotiations (terminal type, window size) are a few bytes long; a
# longer one is a stray 0xFF 0xFA in someone's text, not telnet.
MAX_SUBNEGOTIATION = 256
# Pending replies are a few bytes per DO TIMING-MARK; cap them anyway so a
# peer cannot make us queue replies faster than the door takes them.
MAX_REPLIES = 4096
MAX_COMBINING = 4


class TelnetFilter:
    """Removes telnet commands (RFC 854) from a byte stream. Sans-IO, resumable.

    ``IAC cmd``, ``IAC WILL/WONT/DO/DONT opt`` and ``IAC SB ... IAC SE``
    are dropped; ``IAC IAC`` is a literal 0xFF byte; ``IAC`` before a byte
    that is no command drops only the ``IAC``. ``CR NUL`` (what telnet sends
    for Enter in character mode) becomes ``CR LF``. A subnegotiation ends at
    ``IAC SE``, or, since a stray ``IAC SB`` must not swallow everything the
    client sends after it, at a newline or after ``MAX_SUBNEGOTIATION`` bytes.
    ``IAC DO TIMING-MARK`` adds ``IAC WILL TIMING-MARK`` to ``replies``
    (take them with ``take_replies()`` after each ``feed()``).
    """

    def __init__(self) -> None:
        self._state = "data"
        self._after_cr = False  # the last data byte was CR (for CR NUL)
        self._sb_length = 0
        self._verb = 0
        self.replies = bytearray()

    def take_replies(self) -> bytes:
        """The answers owed to the peer since the last call (usually b"")."""
        if not self.replies:
            return b""
        out = bytes(self.replies)
        self.replies.clear()
        return out

    def feed(self, data: bytes) -> bytes:
        if self._state == "data" and IAC not in data and NUL not in data:
            if data:  # the common case: no telnet at all
                self._after_cr = data[-1] == CR
            return data
        out = bytearray()
        state = self._state
        for byte in data:
            if state == "data":
                if byte == IAC:
                    state = "iac"
                    continue
                if byte == NUL and self._after_cr:
                    byte = LF
                out.append(byte)
                self._after_cr = byte == CR
            elif state == "iac":
                state = "data"
                if byte == IAC:
                    out.append(IAC)
                    self._after_cr = False
                elif byte in (WILL, WONT, DO, DONT):
                    state, self._verb = "option", byte
                elif byte == SB:
                    state, self._sb_length = "sb", 0
                elif byte < SE:  # not a command: keep the byte
                    out.append(byte)
                    self._after_cr = byte == CR
                # else: IAC IP, IAC AO, IAC AYT ...: dropped
            elif state == "option":
                state = "data"
                if self._verb == DO and byte == TIMING_MARK and len(self.replies) < MAX_REPLIES:
                    # We "perform" the mark at once: everything before it is done.
                    self.replies += bytes((IAC, WILL, TIMING_MARK))
            else:  # "sb" or "sb-iac": inside IAC SB ... IAC SE
                self._sb_length += 1
                if byte == LF or self._sb_length > MAX_SUBNEGOTIATION:
                    state = "data"  # not telnet after all: resynchronise on text
                    out.append(byte)
                    self._after_cr = False
                elif state == "sb":
                    if byte == IAC:
                        state = "sb-iac"
                else:
                    state = "data" if byte == SE else "sb"
        self._state = state
        return bytes(out)


# CSI (ESC [ ... final), OSC (ESC ] ... BEL or ESC \), and two-byte escapes.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?")

# Format characters that text needs: the zero-width joiner builds emoji
# sequences and ligatures, the non-joiner is part of Persian spelling.
_KEEP_FORMAT = {"\u200c", "\u200d"}
_SPACE_CATEGORIES = {"Zl", "Zp"}  # U+2028 LINE SEPARATOR, U+2029 PARAGRAPH SEPARATOR
_DROP_CATEGORIES = {"Cc", "Cf"}
_MARK_CATEGORIES = {"Mn", "Me"}


def clean_text(text: str) -> str:
    """Text from a client -> text that is safe to show on someone's screen.

    See the module docstring for what goes; the result has no control
    characters, no line separators and no run of more than
    ``MAX_COMBINING`` combining marks, and no leading or trailing space.
    """
    text = _ANSI.sub("", text.replace("\t", " "))
    if text.isascii():  # the common case: no marks, separators or C1 to look for
        return "".join(ch for ch in text if " " <= ch < "\x7f").strip()
    text = unicodedata.normalize("NFC", text)
    out = []
    marks = 0
    for ch in text:
        category = unicodedata.category(ch)
        if category in _MARK_CATEGORIES:
            marks += 1
            if marks > MAX_COMBINING:
                continue
        else:
            marks = 0
        if category in _DROP_CATEGORIES and ch not in _KEEP_FORMAT:
            continue
        out.append(" " if category in _SPACE_CATEGORIES else ch)
    return "".join(out).strip()


def clean_line(raw: bytes) -> str:
    """Bytes from the wire -> safe text (invalid UTF-8 becomes U+FFFD)."""
    return clean_text(raw.decode("utf-8", errors="replace"))
