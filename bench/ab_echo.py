"""A fixed workload for A/B instruction counts: 1 KiB echo, C connections, R round trips each, one process.

Run it under callgrind with a fixed hash seed, from two checkouts, and
subtract a run with R=1 (the start-up):

    PYTHONHASHSEED=0 PYTHONPATH=CHECKOUT valgrind --tool=callgrind \
        --callgrind-out-file=/dev/null python bench/ab_echo.py 10 2000

Instruction counts repeat to within a few hundred per run whatever else
the machine does, which wall-clock figures on a shared machine do not.
"""
import socket, sys
from reactor import Protocol, Reactor
C, R = int(sys.argv[1]), int(sys.argv[2])
payload = b"x" * 1024
class Echo(Protocol):
    def connection_made(self, t): self.t = t
    def data_received(self, d): self.t.write(d)
class Ping(Protocol):
    def __init__(self): self.n = 0; self.got = 0
    def connection_made(self, t): self.t = t; t.write(payload)
    def data_received(self, d):
        self.got += len(d)
        if self.got >= 1024:
            self.got -= 1024; self.n += 1
            if self.n < R: self.t.write(payload)
            else:
                done.append(1)
                if len(done) == C: reactor.stop()
done = []
with Reactor() as reactor:
    l = reactor.listen_tcp(Echo, "127.0.0.1", 0)
    for _ in range(C): reactor.connect_tcp(Ping, *l.address)
    reactor.run()
    l.close()
