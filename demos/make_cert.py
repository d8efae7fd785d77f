"""Make a self-signed certificate for trying the demos over TLS on this machine.

``python3 -m demos.make_cert`` writes ``cert.pem`` and ``key.pem`` (for the
names ``localhost`` and ``127.0.0.1``, valid 30 days) into ``--dir`` and
prints the commands that use them. It runs the ``openssl`` command-line
tool (Debian package ``openssl``): the standard library can use
certificates but not make them. A self-signed certificate is its own
authority, so clients trust it with ``--cafile cert.pem``; it is for
trying things out, not for a server other people connect to.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

from demos import cli

PROG = "python -m demos.make_cert"


def main(argv: Optional[list[str]] = None) -> int:
    parser = cli.OneLineParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=".", help="where to write cert.pem and key.pem (default: here)")
    parser.add_argument("--days", type=cli.positive_int, default=30, help="validity (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="replace existing files")
    args = parser.parse_args(argv)
    directory = Path(args.dir)
    cert, key = directory / "cert.pem", directory / "key.pem"
    openssl = shutil.which("openssl")
    if openssl is None:
        print(f"{PROG}: the openssl command is not installed (Debian: apt-get install openssl)",
              file=sys.stderr)
        return 2
    if not directory.is_dir():
        print(f"{PROG}: {directory} is not a directory", file=sys.stderr)
        return 2
    if not args.force and (cert.exists() or key.exists()):
        print(f"{PROG}: {cert} or {key} exists already (--force replaces them)", file=sys.stderr)
        return 2
    result = subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", str(args.days),
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["failed"])[-1]
        print(f"{PROG}: openssl req failed: {last}", file=sys.stderr)
        return 2
    key.chmod(0o600)
    print(f"wrote {cert} and {key} (localhost and 127.0.0.1, {args.days} days)")
    print("serve the chat over TLS (and plaintext) with:")
    print(f"  python3 -m demos.chat_server --tls-cert {cert} --tls-key {key}")
    print("then connect with:")
    print(f"  python3 -m demos.chat_client --tls --cafile {cert} --port 7443")
    print(f"  openssl s_client -connect 127.0.0.1:7443 -CAfile {cert} -quiet")
    return 0


if __name__ == "__main__":
    sys.exit(main())
