"""Run a module as a benchmark child: ``python -m bench._child MODULE [ARGS...]``.

Like ``python -m MODULE ARGS...``, except that the process first asks to die
with the benchmark that started it (so a killed benchmark leaves no server
behind) and raises its descriptor limit to the hard limit. ``bench.chat_fanout``
starts ``demos.chat_server`` this way, unmodified.
"""

from __future__ import annotations

import runpy
import sys

from bench._proc import die_with_parent, raise_nofile


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: python -m bench._child MODULE [ARGS...]")
    die_with_parent()
    raise_nofile()
    module = sys.argv[1]
    sys.argv = [module] + sys.argv[2:]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
