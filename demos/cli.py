"""What the demos share on the command line: option types, one-line errors, serving.

Every server demo does the same four things around its own protocol:
validate its options (a port is 0-65535, a count is positive), bind or say
in one line why it cannot (exit status 2, no traceback), stop on SIGINT or
SIGTERM, and tell the user where it listens. They are written once, here.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import ssl
import sys
from typing import Any, Callable, NoReturn, Optional, TypeVar

T = TypeVar("T")


def why(exc: OSError) -> str:
    """The bare reason for *exc*, such as "Address already in use".

    The demos' messages name the address themselves; reactor's
    ``listen_tcp`` names it in its message too, and ``socket.create_server``
    adds "(while attempting to bind on address ...)". A failed name lookup
    (``socket.gaierror``) has a negative errno and its own message.
    """
    if exc.errno is not None and exc.errno > 0:
        return os.strerror(exc.errno)
    return (exc.strerror or str(exc)).partition(" (while attempting")[0]


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line on stderr and exit status 2.

    argparse prints the whole usage block before the error; for a server
    started by a script or a supervisor, the one line that says what is
    wrong is what matters (``--help`` still shows the usage).
    """

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def _option_type(convert: Callable[[str], Any], kind: str, ok: Callable[[Any], bool],
                 rule: str) -> Callable[[str], Any]:
    """An argparse type: *convert* the text, then check it, with one clear line if either fails."""
    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{rule}, got {text}")
        return value
    parse.__name__ = kind.split()[-1]  # what argparse names in "invalid ... value"
    return parse


_INF = float("inf")
port = _option_type(int, "a port number", lambda v: 0 <= v <= 65535, "port must be 0-65535")
positive_int = _option_type(int, "an integer", lambda v: v >= 1, "must be at least 1")
non_negative_int = _option_type(int, "an integer", lambda v: v >= 0, "must be 0 or more")
positive_float = _option_type(float, "a number", lambda v: 0 < v < _INF, "must be a positive number")
non_negative_float = _option_type(float, "a number", lambda v: 0 <= v < _INF,
                                  "must be 0 or a positive number")


def receive_send_parser(prog: str, doc: str, receive_help: str, send_help: str
                        ) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser, argparse.ArgumentParser]:
    """(parser, receive, send): the shape of the two-sided demos (file_transfer, udp_pair)."""
    parser = OneLineParser(prog=prog, description=doc.splitlines()[0],
                                     epilog="Run `%(prog)s receive --help` or `%(prog)s send --help`.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{receive,send}")
    rx = commands.add_parser("receive", help=receive_help)
    rx.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    return parser, rx, commands.add_parser("send", help=send_help)


def run_subcommand(parser: argparse.ArgumentParser, argv: Optional[list[str]]) -> int:
    """Parse, set up logging, and run the chosen side (``set_defaults(run=...)``)."""
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    status: int = args.run(args)
    return status


def setup_logging(verbose: bool) -> None:
    tag = os.environ.get("REACTOR_WORKER", "")  # a worker of --workers (demos/workers.py) says which
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format=f"%(asctime)s %(levelname)s {'worker ' + tag + ' ' if tag else ''}%(name)s: "
                               f"%(message)s")


def listen_or_explain(prog: str, host: str, port_number: int, start: Callable[[], T]) -> Optional[T]:
    """``start()``, or None after one line on stderr saying why it could not listen.

    An error may carry ``what`` (" for udp") and ``hint`` (what to try) for that line.
    """
    try:
        return start()
    except OSError as exc:  # the port is taken, the address is not ours, ...
        print(f"{prog}: cannot listen on {host}:{port_number}{getattr(exc, 'what', '')}: "
              f"{why(exc)}{getattr(exc, 'hint', '')}", file=sys.stderr)
        return None


def serve(reactor: Any, address: Any, what: str = "") -> None:
    """Stop on SIGINT/SIGTERM, say where we listen, run until stopped.

    Signals become ordinary callbacks run by the loop, so stopping is just
    ``reactor.stop()``: no exception unwinds through the demo's code. They
    are installed before the address is announced, so that whoever reads
    that line may signal us at once.
    """
    for sig in (signal.SIGINT, signal.SIGTERM):
        reactor.add_signal_handler(sig, reactor.stop)
    host, port_number = address[:2]
    print(f"listening on {host}:{port_number}{what}", flush=True)
    reactor.run()
    logging.getLogger("demos").info("stopping")


# -- TLS options, shared by the servers (chat, echo, proxy) and the clients ------------------

def add_tls_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tls-cert", metavar="FILE",
                        help="serve TLS with this certificate chain (PEM); make a local one with "
                             "python3 -m demos.make_cert")
    parser.add_argument("--tls-key", metavar="FILE", help="the certificate's private key (PEM)")


def server_tls_context(args: argparse.Namespace) -> tuple[Optional[ssl.SSLContext], str]:
    """(context or None, "") from --tls-cert/--tls-key, or (None, one line saying what is wrong)."""
    cert, key = getattr(args, "tls_cert", None), getattr(args, "tls_key", None)
    if cert is None and key is None:
        return None, ""
    if cert is None or key is None:
        return None, "--tls-cert and --tls-key go together"
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except FileNotFoundError as exc:
        return None, f"cannot read {exc.filename or cert}: {why(exc)}"
    except (ssl.SSLError, OSError) as exc:
        return None, (f"cannot use {cert} with {key}: not a PEM certificate chain and its key "
                      f"({getattr(exc, 'reason', None) or exc})")
    return context, ""


def add_tls_client_options(parser: argparse.ArgumentParser, flag: str = "--tls") -> None:
    parser.add_argument(flag, action="store_true", dest="tls",
                        help="connect over TLS (the server's certificate and name are verified)")
    parser.add_argument("--cafile", metavar="FILE",
                        help="trust the certificates in FILE (e.g. a local one from demos.make_cert) "
                             "instead of the system's")


def client_tls_context(args: argparse.Namespace) -> tuple[Optional[ssl.SSLContext], str]:
    """(context or None, "") from --tls/--cafile, or (None, one line saying what is wrong)."""
    if not getattr(args, "tls", False):
        return None, "--cafile needs --tls" if getattr(args, "cafile", None) else ""
    context = ssl.create_default_context()
    if args.cafile:
        try:
            context.load_verify_locations(args.cafile)
        except FileNotFoundError as exc:
            return None, f"cannot read {args.cafile}: {why(exc)}"
        except (ssl.SSLError, OSError) as exc:
            return None, f"cannot use {args.cafile} as a CA file: {getattr(exc, 'reason', None) or exc}"
    return context, ""
