"""Memory of one idle TLS connection end in OpenSSL, as pyOpenSSL and Twisted's memory BIOs hold it.

    python benchmarks/tls_memory.py [--connections 2000] [--out tls-memory.json]

Each case runs in a fresh child process: N client/server pairs over memory BIOs (as
`TLSMemoryBIOProtocol` uses them) complete a handshake and exchange a few bytes; the RSS growth divided
by 2N is the cost of one connection end.  Cases:

* `tls1.3` / `tls1.2`: the protocol version (a simulated cluster holds three long-lived TLS
  connections: both tunnels, and Rancher's kept-alive connection to its apiserver);
* `no-release`: without `MODE_RELEASE_BUFFERS` (Twisted sets it);
* `+16k` / `+128k`: after one 16 KiB record, or 128 KiB written at once, went through: memory BIOs keep
  the largest size they ever held (what `scaleagent.tlsbuffers` avoids).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CASES = ("tls1.3", "tls1.2", "no-release", "tls1.3+16k", "tls1.3+128k")


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def measure(case: str, count: int) -> float:
    from OpenSSL import SSL

    from scaleagent import certs

    now = datetime.datetime.now(datetime.UTC)
    hour = datetime.timedelta(hours=1)
    ca, ca_key = certs.new_ca("bench-ca", now, hour, backdate=hour)
    names = [certs.general_name("localhost")]
    cert, key = certs.issue_serving(ca, ca_key, "bench", names, now, now + hour, backdate=hour)

    def context(server: bool) -> SSL.Context:
        ctx = SSL.Context(SSL.TLS_METHOD)
        if case != "no-release":
            ctx.set_mode(SSL.MODE_RELEASE_BUFFERS)
        if case == "tls1.2":
            ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
        if server:
            ctx.use_certificate(cert)
            ctx.use_privatekey(key)
        return ctx

    def move(a: SSL.Connection, b: SSL.Connection, handshake: bool = False) -> None:
        for _ in range(20):
            if handshake:
                for side in (a, b):
                    try:
                        side.do_handshake()
                    except SSL.WantReadError:
                        pass
            for source, target in ((a, b), (b, a)):
                try:
                    target.bio_write(source.bio_read(1 << 20))
                except SSL.WantReadError:
                    pass
            for side in (a, b):
                try:
                    while side.recv(1 << 16):
                        pass
                except SSL.WantReadError:
                    pass

    server_ctx, client_ctx = context(True), context(False)
    extra = {"tls1.3+16k": 16_000, "tls1.3+128k": 128_000}.get(case, 0)
    kept = []
    gc.collect()
    before = rss_kib()
    for _ in range(count):
        server = SSL.Connection(server_ctx, None)
        server.set_accept_state()
        client = SSL.Connection(client_ctx, None)
        client.set_connect_state()
        move(client, server, handshake=True)
        client.send(b"ping")
        move(client, server)
        if extra:
            payload = os.urandom(extra)
            sent = 0
            while sent < len(payload):
                sent += server.send(payload[sent : sent + 16384])
            move(client, server)
        kept.append((client, server))
    gc.collect()
    return (rss_kib() - before) / (2 * count)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--out", default="")
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)  # one case, in a child process
    args = parser.parse_args()
    if args.case:
        print(json.dumps(measure(args.case, args.connections)))
        return
    from OpenSSL import SSL

    figures = {"openssl": SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode(), "connections": args.connections}
    for case in CASES:
        out = subprocess.run(
            [sys.executable, __file__, "--case", case, "--connections", str(args.connections)],
            check=True, capture_output=True, text=True, timeout=600,
        )
        figures[case] = round(json.loads(out.stdout), 1)
        print(f"{case:12} {figures[case]:6.1f} KiB per connection end")
    print(figures["openssl"])
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
