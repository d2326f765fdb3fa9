"""A network of its own for every environment: namespaces, bridges, addresses, the host's filter.

Every ``linux`` sandbox has its own network namespace, so its loopback, its abstract unix
sockets and its listening sockets are its own. An environment on a network gets one veth
pair: one end is ``eth0`` inside the namespace (created there directly: moving a device
between namespaces costs ~13 ms here, creating it in place ~1 ms), the other end is a port
of its network's bridge on the host (``sqbr-<name>``), isolated from the bridge's other
ports so that environments do not reach each other. Traffic leaving a bridge for the
outside is masqueraded. Each network has one nftables table of its own (``inet
squall_<name>``; servers sharing the host share it) that decides what the network reaches:

* never the host itself (the ``input`` hook drops new connections from the bridge), except
  the network's ``host_ports``, and never another environment (nothing connects *into* a
  bridge);
* always the host's DNS servers (those of ``/etc/resolv.conf``), port 53;
* the ``default`` network: the internet — any address but private, shared, link-local,
  loopback and multicast ranges and its own subnet;
* a named network (settings ``networks``; joined through ``VpcConfig`` or the tag
  ``squall:network``): its ``cidrs`` (only their ``ports``, when listed), and the internet
  too when ``internet`` is true.

Addresses are shared by every Squall server on the host: one is taken while its byte in the
network's lock file under ``/run/squall`` is locked (an open-file-description lock: the
kernel releases it when its holder dies), and they are handed out round-robin so that an
address is reused as late as possible. The host-side netlink work runs in one thread (pyroute2
is not thread-safe), ahead of need for spare sandboxes; the sandbox configures ``eth0``
itself (``_squall_zygote/jail.py``).
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import ipaddress
import logging
import os
import random
import secrets
import shutil
import struct
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

log = logging.getLogger("squall.sandbox.linux")

DEFAULT = "default"
NONE = "none"
BRIDGE_PREFIX = "sqbr-"
LOCK_DIR = Path("/run/squall")
NAMED_POOL = ipaddress.IPv4Network("10.214.0.0/15")  # named networks' subnets, unless they name one
NAMED_PREFIX = 22
NOT_INTERNET = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
        "192.0.0.0/24", "192.168.0.0/16", "224.0.0.0/4", "240.0.0.0/4",
    )
)


class NetworkUnavailable(Exception):
    """Environments cannot have networks here; the message says why and what to do."""


class NetworkFull(OSError):
    """Every address of a network is taken."""


@dataclass(frozen=True)
class NetworkSpec:
    """One network as the settings define it."""

    name: str
    subnet: ipaddress.IPv4Network
    cidrs: tuple[ipaddress.IPv4Network, ...] = ()
    ports: tuple[int, ...] = ()  # empty: every port of the cidrs
    internet: bool = True
    host_ports: tuple[int, ...] = ()  # the host's own ports it may connect to (at the gateway)

    @property
    def bridge(self) -> str:
        return BRIDGE_PREFIX + self.name

    @property
    def table(self) -> str:
        return "squall_" + self.name

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        return self.subnet.network_address + 1

    def describe(self) -> dict[str, object]:
        return {
            "subnet": str(self.subnet), "gateway": str(self.gateway), "bridge": self.bridge,
            "cidrs": [str(c) for c in self.cidrs], "ports": list(self.ports), "internet": self.internet,
            "host_ports": list(self.host_ports),
        }


def valid_name(name: str) -> bool:
    """Network names: 1-10 lower-case letters and digits (a bridge's name has 15 bytes at most,
    and ``subnet-<name>``/``sg-<name>`` must fit Lambda's patterns for VpcConfig ids)."""
    return 0 < len(name) <= 10 and name.isascii() and name.isalnum() and name == name.lower() and name not in (DEFAULT, NONE)


def network_specs(default_subnet: str, networks: Mapping[str, Mapping[str, Any]]) -> dict[str, NetworkSpec]:
    """The networks of the settings, each with a subnet of its own; a named network without
    ``subnet`` gets a /22 of 10.214.0.0/15 chosen from its name (the same on every server)."""
    specs = {DEFAULT: NetworkSpec(DEFAULT, _subnet(default_subnet, DEFAULT))}
    for name in sorted(networks):
        raw = dict(networks[name])
        if not valid_name(name):
            raise ValueError(f"network name {name!r}: use 1-10 lower-case letters and digits (not 'default' or 'none')")
        unknown = set(raw) - {"subnet", "cidrs", "ports", "internet", "host_ports"}
        if unknown:
            raise ValueError(f"network {name!r}: unknown keys {sorted(unknown)} (subnet, cidrs, ports, internet, host_ports)")
        taken = [s.subnet for s in specs.values()]
        subnet = _subnet(raw["subnet"], name) if raw.get("subnet") else _carve(name, taken)
        specs[name] = NetworkSpec(
            name,
            subnet,
            tuple(ipaddress.IPv4Network(c, strict=False) for c in raw.get("cidrs", ())),
            _ports(raw.get("ports", ()), name),
            bool(raw.get("internet", False)),
            _ports(raw.get("host_ports", ()), name),
        )
    subnets = sorted((s.subnet, s.name) for s in specs.values())
    for (a, a_name), (b, b_name) in zip(subnets, subnets[1:]):
        if a.overlaps(b):
            raise ValueError(f"networks {a_name!r} ({a}) and {b_name!r} ({b}) overlap: give them subnets of their own")
    return specs


def _subnet(text: str, name: str) -> ipaddress.IPv4Network:
    subnet = ipaddress.IPv4Network(text)
    if subnet.prefixlen > 29:
        raise ValueError(f"network {name!r}: subnet {subnet} is too small (a /29 at least)")
    return subnet


def _ports(ports: Iterable[Any], name: str) -> tuple[int, ...]:
    out = tuple(sorted({int(p) for p in ports}))
    if any(not 0 < p < 65536 for p in out):
        raise ValueError(f"network {name!r}: ports are 1-65535")
    return out


def _carve(name: str, taken: list[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
    choices = list(NAMED_POOL.subnets(new_prefix=NAMED_PREFIX))
    start = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big") % len(choices)
    for i in range(len(choices)):
        subnet = choices[(start + i) % len(choices)]
        if not any(subnet.overlaps(t) for t in taken):
            return subnet
    raise ValueError(f"network {name!r}: no free subnet left in {NAMED_POOL}; give it a subnet")


def nameservers(resolv_conf: str = "/etc/resolv.conf") -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 DNS servers environments use (their resolv.conf is the host's)."""
    found = []
    try:
        with open(resolv_conf) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    try:
                        found.append(ipaddress.IPv4Address(parts[1]))
                    except ValueError:
                        pass  # IPv6: environments have no IPv6 route
    except OSError:
        pass
    return tuple(found)


def _set(items: Iterable[object]) -> str:
    return "{ " + ", ".join(str(i) for i in items) + " }"


def ruleset(spec: NetworkSpec, dns: tuple[ipaddress.IPv4Address, ...] = ()) -> str:
    """One network's nftables table (replacing any earlier version of it, atomically)."""
    br = f'"{spec.bridge}"'
    input_rules = [f"iifname {br} ct state established,related accept"]
    forward = [
        f"oifname {br} ct state established,related accept",
        f"oifname {br} drop",  # nothing connects into an environment, from anywhere
        f"iifname {br} ct state established,related accept",
    ]
    reachable_dns = [a for a in dns if not a.is_loopback]
    if reachable_dns:
        for proto in ("udp", "tcp"):
            input_rules.append(f"iifname {br} ip daddr {_set(reachable_dns)} {proto} dport 53 accept")
            forward.append(f"iifname {br} ip daddr {_set(reachable_dns)} {proto} dport 53 accept")
    if spec.host_ports:
        for proto in ("tcp", "udp"):
            input_rules.append(f"iifname {br} {proto} dport {_set(spec.host_ports)} accept")
    input_rules.append(f"iifname {br} ip daddr {spec.gateway} tcp dport @api_ports accept")  # Squall's API
    input_rules.append(f"iifname {br} drop")
    for cidr in spec.cidrs:
        if spec.ports:
            for proto in ("tcp", "udp"):
                forward.append(f"iifname {br} ip daddr {cidr} {proto} dport {_set(spec.ports)} accept")
        else:
            forward.append(f"iifname {br} ip daddr {cidr} accept")
    if spec.internet:
        closed = ipaddress.collapse_addresses([*NOT_INTERNET, spec.subnet])
        forward += [f"iifname {br} ip daddr {_set(closed)} drop", f"iifname {br} meta nfproto ipv4 accept"]
    forward.append(f"iifname {br} drop")
    table = f"inet {spec.table}"

    def body(rules: list[str]) -> str:
        return "".join(f"\n        {rule}" for rule in rules)

    # The table, its chains and the set of API ports are declared (kept if they exist: the
    # set holds every server's port), then the chains are flushed and filled anew.
    return f"""table {table} {{
    set api_ports {{ type inet_service; }}
    chain input {{ type filter hook input priority filter; policy accept; }}
    chain forward {{ type filter hook forward priority filter; policy accept; }}
    chain postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}
}}
flush chain {table} input
flush chain {table} forward
flush chain {table} postrouting
table {table} {{
    chain input {{{body(input_rules)}
    }}
    chain forward {{{body(forward)}
    }}
    chain postrouting {{
        ip saddr {spec.subnet} oifname != {br} masquerade
    }}
}}
"""


def bridge_mac(bridge: str) -> str:
    """A locally administered unicast MAC address for ``bridge``, derived from its name."""
    digest = hashlib.sha256(bridge.encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


def _address_assigned_by_kernel(ifname: str) -> bool:
    """Whether the device's MAC address was not set by anyone (it follows its ports then)."""
    try:
        return Path(f"/sys/class/net/{ifname}/addr_assign_type").read_text().strip() != "3"  # NET_ADDR_SET
    except OSError:
        return True


# ---- addresses, shared by the servers of this host ---------------------------------------
_FLOCK = "hhqqi4x"  # struct flock on 64-bit Linux


class Addresses:
    """The free addresses of one network. An address is taken while its byte in the network's
    lock file is locked (an OFD lock: per open file, released when the holder dies)."""

    def __init__(self, spec: NetworkSpec, lock_dir: Path) -> None:
        lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.subnet = spec.subnet
        self._fd = os.open(lock_dir / f"{spec.bridge}-{spec.subnet.network_address}-{spec.subnet.prefixlen}.addresses",
                           os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._last = spec.subnet.num_addresses - 2  # the broadcast address is not handed out
        self._next = random.randint(2, self._last)  # 0: the network, 1: the gateway
        self._held: set[int] = set()

    def take(self) -> ipaddress.IPv4Address:
        for _ in range(self._last - 1):
            index = self._next
            self._next = index + 1 if index < self._last else 2
            if index not in self._held and self._lock(index, fcntl.F_WRLCK):
                self._held.add(index)
                return self.subnet.network_address + index
        raise NetworkFull(f"network {self.subnet} has no free address left")

    def give_back(self, address: ipaddress.IPv4Address) -> None:
        index = int(address) - int(self.subnet.network_address)
        if index in self._held:
            self._held.discard(index)
            self._lock(index, fcntl.F_UNLCK)

    def _lock(self, index: int, kind: int) -> bool:
        try:
            fcntl.fcntl(self._fd, fcntl.F_OFD_SETLK, struct.pack(_FLOCK, kind, os.SEEK_SET, index, 1, 0))
            return True
        except (BlockingIOError, PermissionError):
            return False

    def close(self) -> None:
        os.close(self._fd)


# ---- one environment's place on a network --------------------------------------------------
@dataclass
class Plumbing:
    """An environment's address on a network and the host end of its veth."""

    network: str
    address: ipaddress.IPv4Address
    host_ifname: str
    done: bool = False  # the veth exists, its inner end in the sandbox
    released: bool = False

    def for_sandbox(self, spec: NetworkSpec) -> dict[str, object]:
        """What the sandbox needs to configure its ``eth0``."""
        return {"address": str(self.address), "prefix": spec.subnet.prefixlen, "gateway": str(spec.gateway)}


class Networks:
    """The host side of environments' networks: bridges, the filter, addresses, veths."""

    def __init__(self, specs: dict[str, NetworkSpec], lock_dir: Path = LOCK_DIR) -> None:
        self.specs = specs
        self.dns = nameservers()
        self._addresses = {name: Addresses(spec, lock_dir) for name, spec in specs.items()}
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="squall-net")  # pyroute2 is not thread-safe
        self._ip: Any = None
        self._bridges: dict[str, int] = {}

    @classmethod
    def set_up(cls, specs: dict[str, NetworkSpec], lock_dir: Path = LOCK_DIR) -> Networks:
        """Bridges, forwarding and the filter for ``specs``, or :class:`NetworkUnavailable`."""
        nft = shutil.which("nft")
        if nft is None:
            raise NetworkUnavailable("nftables is not installed (apt install nftables)")
        try:
            import pyroute2  # noqa: F401
        except ImportError as e:
            raise NetworkUnavailable(f"pyroute2 is missing ({e}; pip install pyroute2)") from None
        try:
            networks = cls(specs, lock_dir)
        except OSError as e:
            raise NetworkUnavailable(f"cannot lock addresses under {lock_dir}: {e}") from None
        try:
            networks._thread.submit(networks._set_up_bridges).result()
            script = "".join(ruleset(spec, networks.dns) for spec in specs.values())
            done = subprocess.run([nft, "-f", "-"], input=script, capture_output=True, text=True, timeout=30)
            if done.returncode != 0:
                raise NetworkUnavailable(f"nft refused Squall's rules: {done.stderr.strip()[-400:]}")
            _enable_forwarding()
        except NetworkUnavailable:
            networks.close()
            raise
        except Exception as e:
            networks.close()
            raise NetworkUnavailable(f"cannot set up the bridges: {e}") from e
        if any(a.is_loopback for a in networks.dns):
            log.warning("the host's DNS server is on its loopback (%s): environments cannot resolve names; "
                        "point /etc/resolv.conf at a resolver on another address", ", ".join(map(str, networks.dns)))
        return networks

    def _set_up_bridges(self) -> None:
        from pyroute2 import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError

        ip = self._ip = IPRoute()
        ours = {spec.bridge for spec in self.specs.values()}
        for link in ip.get_links():
            name = link.get_attr("IFLA_IFNAME")
            if name in ours:
                continue
            for addr in ip.get_addr(index=link["index"], family=2):
                host = ipaddress.IPv4Interface(f"{addr.get_attr('IFA_ADDRESS')}/{addr['prefixlen']}")
                for spec in self.specs.values():
                    if host.network.overlaps(spec.subnet):
                        raise NetworkUnavailable(
                            f"network {spec.name!r} ({spec.subnet}) overlaps {host} on {name}: "
                            "give it another subnet (settings network_subnet, or networks.<name>.subnet)")
        for spec in self.specs.values():
            found = ip.link_lookup(ifname=spec.bridge)
            if not found:
                try:
                    ip.link("add", ifname=spec.bridge, kind="bridge")
                except NetlinkError as e:
                    if e.code != 17:  # another server made it meanwhile
                        raise
                found = ip.link_lookup(ifname=spec.bridge)
            index = found[0]
            gateway = str(spec.gateway)
            if not any(a.get_attr("IFA_ADDRESS") == gateway for a in ip.get_addr(index=index)):
                try:
                    ip.addr("add", index=index, address=gateway, prefixlen=spec.subnet.prefixlen)
                except NetlinkError as e:
                    if e.code != 17:
                        raise
            # A bridge whose address was never set takes the lowest of its ports' addresses, so
            # a new environment's veth can change it: the others' ARP entries for the gateway then
            # point nowhere for up to half a minute (connections to the API hang). Setting the
            # address fixes it for good (one derived from the bridge's name, the same for every
            # server of this host).
            if _address_assigned_by_kernel(spec.bridge):
                ip.link("set", index=index, address=bridge_mac(spec.bridge))
            ip.link("set", index=index, state="up")
            self._bridges[spec.name] = index

    # ---- an environment's plumbing -------------------------------------------------------
    def reserve(self, network: str) -> Plumbing:
        """An address on ``network`` (raises :class:`NetworkFull`)."""
        return Plumbing(network, self._addresses[network].take(), self.new_ifname())

    @staticmethod
    def new_ifname() -> str:
        """A name for the host end of a veth, unique among every server's (15 bytes at most)."""
        return "sqv" + secrets.token_hex(5)

    def release(self, plumbing: Plumbing) -> None:
        """The environment is gone (its veth went with its namespace): its address is free."""
        if not plumbing.released:
            plumbing.released = True
            self._addresses[plumbing.network].give_back(plumbing.address)

    async def plumb(self, plumbing: Plumbing, pid: int) -> None:
        """Give the sandbox whose B is ``pid`` its ``eth0``, attached to the network's bridge."""
        await asyncio.get_running_loop().run_in_executor(self._thread, self._plumb, plumbing, pid)

    def _plumb(self, plumbing: Plumbing, pid: int) -> None:
        ip = self._ip
        host = plumbing.host_ifname
        ip.link("add", ifname=host, kind="veth", peer={"ifname": "eth0", "net_ns_pid": pid},
                master=self._bridges[plumbing.network], state="up")
        try:
            ip.brport("set", index=ip.link_lookup(ifname=host)[0], isolated=1)
        except BaseException:
            self._delete(host)
            raise
        plumbing.done = True

    async def move(self, plumbing: Plumbing, network: str) -> Plumbing:
        """The same veth on another network, with an address there (a spare plumbed ahead for
        the default network, taken by a function of another)."""
        moved = self.reserve(network)
        moved.host_ifname, moved.done = plumbing.host_ifname, plumbing.done
        self.release(plumbing)
        if moved.done:
            try:
                await asyncio.get_running_loop().run_in_executor(
                    self._thread, self._attach, moved.host_ifname, self._bridges[network])
            except BaseException:
                self.release(moved)
                raise
        return moved

    def _attach(self, host_ifname: str, bridge: int) -> None:
        ip = self._ip
        index = ip.link_lookup(ifname=host_ifname)[0]
        ip.link("set", index=index, master=bridge)
        ip.brport("set", index=index, isolated=1)

    def discard(self, plumbing: Plumbing) -> None:
        """Take the veth away (the sandbox stays, with its loopback only): soon, not now —
        deleting a device waits for an RCU grace period (~20 ms here). The sandbox brings its
        end down first; without carrier and master, the host end carries nothing meanwhile."""
        self.release(plumbing)
        if plumbing.done:
            plumbing.done = False
            self._thread.submit(self._delete, plumbing.host_ifname)

    def _delete(self, host_ifname: str) -> None:
        try:
            found = self._ip.link_lookup(ifname=host_ifname)
            if found:
                self._ip.link("set", index=found[0], master=0, state="down")
                self._ip.link("del", index=found[0])
        except Exception as e:  # gone with its namespace meanwhile
            log.debug("cannot delete %s: %s", host_ifname, e)

    def allow_api(self, port: int) -> None:
        """Let environments reach this server's API at their gateway, ``port``."""
        self._api_ports("add", port)

    def forbid_api(self, port: int) -> None:
        self._api_ports("delete", port)

    def _api_ports(self, verb: str, port: int) -> None:
        nft = shutil.which("nft")
        if nft is None:
            return
        script = "".join(f"{verb} element inet {spec.table} api_ports {{ {port} }}\n" for spec in self.specs.values())
        done = subprocess.run([nft, "-f", "-"], input=script, capture_output=True, text=True, timeout=30)
        if done.returncode != 0 and verb == "add":
            log.warning("environments cannot reach the API on port %d: nft said %s", port, done.stderr.strip()[-300:])

    def describe(self) -> dict[str, object]:
        return {"networks": {name: spec.describe() for name, spec in self.specs.items()},
                "dns": [str(a) for a in self.dns]}

    def close(self) -> None:
        """Our thread and lock files. The bridges and tables stay: other servers may share
        them, and environments still running keep their network until they end."""

        def shut() -> None:
            if self._ip is not None:
                self._ip.close()

        try:
            self._thread.submit(shut).result()
        finally:
            self._thread.shutdown(wait=True)
            for addresses in self._addresses.values():
                addresses.close()


def _enable_forwarding() -> None:
    path = "/proc/sys/net/ipv4/ip_forward"
    with open(path) as f:
        if f.read().strip() == "1":
            return
    with open(path, "w") as f:
        f.write("1")
    log.warning("enabled IPv4 forwarding on this host (net.ipv4.ip_forward=1): environments reach the network through it")
