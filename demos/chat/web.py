"""The web door's command-line options and start-up, for ``server``.

Kept apart from ``web_door`` so that the server (and its ``--help``) runs
without the optional ``web`` extra: h11 and wsproto are imported only when
``--web-port`` or ``--web-tls-port`` is given, and their absence is then
one clear line, not a traceback.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

from ..cli import non_negative_float, port, positive_float, positive_int, why
from .web_monitor import is_loopback_host

__all__ = ["add_options", "check_options", "start", "announce"]


def add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("web (pip install -e '.[web]': h11 and wsproto)")
    group.add_argument("--web-port", type=port, metavar="PORT",
                       help="serve the chat in a browser: http://HOST:PORT/ (off unless given)")
    group.add_argument("--web-tls-port", type=port, metavar="PORT",
                       help="with --tls-cert: the same over TLS, https:// and wss:// (off unless given)")
    group.add_argument("--web-monitor", action="store_true",
                       help="also serve /reactor: the loop live, for a loopback --host only")
    group.add_argument("--web-request-timeout", type=positive_float, default=10.0, metavar="SECONDS",
                       help="for a whole HTTP request, and a keep-alive connection's idle time "
                            "(default: %(default)s)")
    group.add_argument("--web-ping-interval", type=non_negative_float, default=30.0, metavar="SECONDS",
                       help="ping a silent browser after this long; 0 = never (default: %(default)s)")
    group.add_argument("--web-ping-timeout", type=positive_float, default=30.0, metavar="SECONDS",
                       help="seconds for a browser to answer a ping (default: %(default)s)")
    group.add_argument("--web-max-message", type=positive_int, default=16 * 1024, metavar="BYTES",
                       help="largest WebSocket message taken from a browser (default: %(default)s)")


def check_options(args: argparse.Namespace, tls: Any) -> str:
    """"" if the web options make sense together, else one line saying what does not."""
    wanted = args.web_port is not None or args.web_tls_port is not None
    if args.web_tls_port is not None and tls is None:
        return "--web-tls-port needs --tls-cert and --tls-key"
    if args.web_monitor and not wanted:
        return "--web-monitor needs --web-port (or --web-tls-port)"
    if args.web_monitor and not is_loopback_host(args.host):
        return (f"--web-monitor shows the loop's insides and is for loopback only, "
                f"not --host {args.host}: use --host 127.0.0.1")
    if wanted:
        missing = [name for name in ("h11", "wsproto") if not _importable(name)]
        if missing:
            return (f"the web door needs {' and '.join(missing)}: pip install -e '.[web]' "
                    f"(or pip install h11 wsproto)")
    return ""


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def start(server: Any, args: argparse.Namespace, tls: Any) -> tuple[list[tuple[str, str, Any]], str]:
    """Listen as the options say: ([(label, scheme, listener)], "") or ([], why not)."""
    if args.web_port is None and args.web_tls_port is None:
        return [], ""
    from .web_door import WebConfig, WebSite  # the web extra: checked by check_options

    config = WebConfig(monitor=args.web_monitor, request_timeout=args.web_request_timeout,
                       ping_interval=args.web_ping_interval, ping_timeout=args.web_ping_timeout,
                       max_message=args.web_max_message)
    site = WebSite(server, config)
    started: list[tuple[str, str, Any]] = []
    for label, scheme, option, number, context in (("web", "http", "--web-port", args.web_port, None),
                                                   ("web-tls", "https", "--web-tls-port", args.web_tls_port, tls)):
        if number is None:
            continue
        try:
            started.append((label, scheme, server.listen_web(args.host, number, site, context)))
        except OSError as exc:
            return [], f"cannot listen on {args.host}:{number}: {why(exc)} (try another {option})"
    return started, ""


def announce(started: list[tuple[str, str, Any]], monitor: bool) -> list[str]:
    """What to print: where the web door listens, and the address to open."""
    if not started:
        return ["browsers: restart with --web-port 8080, then open http://127.0.0.1:8080/"]
    lines = []
    for label, _, listener in started:
        host, number = listener.address[:2]
        lines.append(f"{label} on {host}:{number}")
    for _, scheme, listener in started:
        host, number = listener.address[:2]
        shown = f"[{host}]" if ":" in host else host
        lines.append(f"in a browser: {scheme}://{shown}:{number}/" +
                     (f" (and {scheme}://{shown}:{number}/reactor to watch the loop)" if monitor else ""))
    return lines

