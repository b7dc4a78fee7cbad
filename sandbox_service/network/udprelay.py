"""The relay behind a published UDP port.

systemd-socket-proxyd forwards stream connections only, so a ``--publish .../udp`` is served by this small
program instead. Like the TCP proxy it is socket-activated: PID 1 binds the datagram socket on the host
(in the host's network namespace) and passes it as fd 3 to the relay, which runs in the sandbox's network
namespace. Each client address gets a socket of its own, connected to 127.0.0.1:PORT inside; what the
service answers on it goes back to that client through the host socket. A client's socket is closed after
IDLE seconds without traffic, and at most MAX_PEERS clients are tracked (the least recently seen one
makes room for a new one).

The program is stored as text and rendered into the proxy unit's ExecStart= (``python3 -c``), so the
unit needs nothing but the host's Python standard library, and the relay cannot drift from the unit that
runs it. It reads the inner port from its first argument.
"""

from __future__ import annotations

PYTHON = "/usr/bin/python3"
IDLE_SECONDS = 120
MAX_PEERS = 512

SOURCE = f"""\
import os, selectors, socket, sys, time
port = int(sys.argv[1])
if os.environ.get("LISTEN_FDS") != "1" or os.environ.get("LISTEN_PID") != str(os.getpid()):
    sys.exit("sandbox-service udp relay: expected one socket from systemd (LISTEN_FDS=1)")
outer = socket.socket(fileno=3)
outer.setblocking(False)
sel = selectors.DefaultSelector()
sel.register(outer, selectors.EVENT_READ)
peers = {{}}
def drop(client):
    inner = peers.pop(client)[0]
    sel.unregister(inner)
    inner.close()
while True:
    events = sel.select(10)
    now = time.monotonic()
    for key, _ in events:
        if key.fileobj is outer:
            try:
                data, client = outer.recvfrom(65535)
            except OSError:
                continue
            if client not in peers:
                if len(peers) >= {MAX_PEERS}:
                    drop(min(peers, key=lambda c: peers[c][1]))
                inner = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                inner.setblocking(False)
                inner.connect(("127.0.0.1", port))
                sel.register(inner, selectors.EVENT_READ, client)
                peers[client] = [inner, now]
            peers[client][1] = now
            try:
                peers[client][0].send(data)
            except OSError:
                pass
        elif key.data in peers and peers[key.data][0] is key.fileobj:
            try:
                data = key.fileobj.recv(65535)
                outer.sendto(data, key.data)
            except OSError:
                continue
            peers[key.data][1] = now
    for client in [c for c, (_, seen) in peers.items() if now - seen > {IDLE_SECONDS}]:
        drop(client)
"""


def argv(port: int) -> tuple[str, ...]:
    """The relay's command line: the program as one ``python3 -c`` word (newlines written as ``\\n``
    inside a Python string literal, so the unit-file line stays one line), then the inner port."""
    program = f"exec({SOURCE!r})"
    return (PYTHON, "-I", "-S", "-B", "-c", program, str(port))
