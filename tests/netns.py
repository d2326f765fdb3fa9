"""Stand-in hosts for network tests: each a network namespace of this machine, joined to the
host by a veth pair with a /30, running a tiny TCP service that answers a banner.

Nothing leaves the machine: the hosts' addresses exist only here, and the tests send traffic
to them, to 127.0.0.1 and to the host's own addresses only.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field

# A service for the namespace: answers "<name>:<port>" on each port, then closes; it
# stops by itself after SERVICE_LIFETIME_S (bounded even if a test leaks it).
SERVICE = r"""
import selectors, socket, sys, time
name, ports, lifetime = sys.argv[1], [int(p) for p in sys.argv[2].split(",")], float(sys.argv[3])
sel = selectors.DefaultSelector()
for port in ports:
    s = socket.create_server(("0.0.0.0", port))
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, port)
print("ready", flush=True)
deadline = time.monotonic() + lifetime
while time.monotonic() < deadline:
    for key, _ in sel.select(1.0):
        try:
            conn, _ = key.fileobj.accept()
            conn.sendall(("%s:%d" % (name, key.data)).encode())
            conn.close()
        except OSError:
            pass
"""
SERVICE_LIFETIME_S = 900


def netns_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 is not installed (apt install iproute2)"
    return None


@dataclass
class StandInHost:
    """One namespace: ``address`` is the host's side of it as seen from this machine."""

    name: str
    network: ipaddress.IPv4Network  # a /30: .1 on this machine, .2 in the namespace
    ports: tuple[int, ...]
    namespace: str = field(default_factory=lambda: f"sqt-{uuid.uuid4().hex[:8]}")
    _service: subprocess.Popen[str] | None = None

    @property
    def address(self) -> str:
        return str(self.network.network_address + 2)

    @property
    def near(self) -> str:
        return str(self.network.network_address + 1)

    def start(self) -> StandInHost:
        ns, near_if, far_if = self.namespace, "sqh" + self.namespace[4:], "sqf" + self.namespace[4:]
        prefix = self.network.prefixlen
        for command in (
            ["ip", "netns", "add", ns],
            ["ip", "link", "add", near_if, "type", "veth", "peer", "name", far_if, "netns", ns],
            ["ip", "addr", "add", f"{self.near}/{prefix}", "dev", near_if],
            ["ip", "link", "set", near_if, "up"],
            ["ip", "-n", ns, "addr", "add", f"{self.address}/{prefix}", "dev", far_if],
            ["ip", "-n", ns, "link", "set", far_if, "up"],
            ["ip", "-n", ns, "link", "set", "lo", "up"],
            ["ip", "-n", ns, "route", "add", "default", "via", self.near],
        ):
            subprocess.run(command, check=True, capture_output=True, timeout=30)
        self._service = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", SERVICE, self.name,
             ",".join(map(str, self.ports)), str(SERVICE_LIFETIME_S)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        assert self._service.stdout is not None
        line = self._service.stdout.readline()
        if line.strip() != "ready":
            self.stop()
            raise RuntimeError(f"the stand-in host {self.name} did not start: {line}")
        return self

    def stop(self) -> None:
        if self._service is not None and self._service.poll() is None:
            self._service.kill()
            self._service.wait(timeout=10)
        subprocess.run(["ip", "netns", "del", self.namespace], capture_output=True, timeout=30)
        deadline = time.monotonic() + 5  # the veth goes with the namespace, a moment later
        while time.monotonic() < deadline and subprocess.run(
            ["ip", "link", "show", "sqh" + self.namespace[4:]], capture_output=True
        ).returncode == 0:
            time.sleep(0.05)
