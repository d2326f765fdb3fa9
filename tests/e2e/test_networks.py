"""Every environment on a network of its own (issue 12): what a function reaches, and what not.

The test stands up its own hosts in network namespaces of this machine (``tests/netns.py``):
``internet``, an address outside every private range (198.18.0.0/15, the benchmarking
range, reached through this machine as the internet would be), and ``private``, an address
in 10.0.0.0/8 as a database in a VPC would have. A server with two named networks then runs
functions on each network and tries everything: the stand-in hosts, the Squall API and
PostgreSQL on this machine (at 127.0.0.1, at the gateway, at the machine's own address),
another environment's address and abstract unix socket. No traffic leaves this machine.
"""

from __future__ import annotations

import ipaddress
import json
import random
import socket
import subprocess
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError

from tests.conftest import create_function, require, start_server
from tests.contract import linux_unavailable
from tests.netns import StandInHost, netns_unavailable

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

# Tries every target at once (blocked ones time out after TIMEOUT_S), and can hold a TCP
# listener and an abstract unix socket open in its environment for others to try.
PROBE = r"""
import os, socket, threading
from concurrent.futures import ThreadPoolExecutor
TIMEOUT_S = 1.5
held = []

def attempt(target):
    host, port = target
    try:
        with socket.create_connection((host, port), timeout=TIMEOUT_S) as s:
            s.settimeout(TIMEOUT_S)
            try:
                return "ok:" + s.recv(64).decode()
            except OSError:
                return "ok"
    except OSError as e:
        return type(e).__name__

def meet(name):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect("\0" + name)
        return "ok"
    except OSError as e:
        return type(e).__name__
    finally:
        s.close()

def handler(event, context):
    out = {"interfaces": sorted(n for _, n in socket.if_nameindex())}
    if event.get("hold"):
        tcp = socket.create_server(("0.0.0.0", 7000))
        unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        unix.bind("\0" + event["hold"])
        unix.listen(8)
        held.extend([tcp, unix])
        def serve():
            while True:
                conn, _ = tcp.accept()
                conn.sendall(b"env")
                conn.close()
        threading.Thread(target=serve, daemon=True).start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("198.18.0.1", 9))
            out["address"] = s.getsockname()[0]
        except OSError:
            out["address"] = None
    targets = [tuple(t) for t in event.get("targets", [])]
    if targets:
        with ThreadPoolExecutor(len(targets)) as pool:
            out["reach"] = dict(zip(["%s:%d" % t for t in targets], pool.map(attempt, targets)))
    if event.get("meet"):
        out["meet"] = meet(event["meet"])
    if event.get("api"):  # the API where the SDKs find it, unsigned: refused
        import urllib.error, urllib.request
        try:
            urllib.request.urlopen(os.environ["AWS_ENDPOINT_URL_LAMBDA"] + "/2015-03-31/functions/", timeout=5)
            out["api"] = "served"
        except urllib.error.HTTPError as e:
            out["api"] = "%d %s" % (e.code, e.headers.get("x-amzn-ErrorType"))
    return out
"""

BLOCKED = "TimeoutError"  # dropped by the host's filter
REFUSED = "ConnectionRefusedError"  # the environment's own loopback: nothing listens there


def _host_addresses() -> list[str]:
    """This machine's own IPv4 addresses, but loopback and Squall's bridges."""
    lines = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True, check=True).stdout.splitlines()
    found = []
    for line in lines:
        parts = line.split()
        if parts[1] == "lo" or parts[1].startswith("sqbr-") or parts[1].startswith("sqh"):
            continue
        found.append(parts[3].split("/")[0])
    return found


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    reason = linux_unavailable() or netns_unavailable()
    require(reason is None, f"network tests need the linux sandbox and namespaces: {reason}")
    k = random.randrange(0, 63)
    internet = StandInHost("internet", ipaddress.IPv4Network(f"198.18.{k}.0/30"), (8080,)).start()
    private = StandInHost("private", ipaddress.IPv4Network(f"10.77.{k}.0/30"), (5432, 6000)).start()
    on_host = socket.create_server(("0.0.0.0", 0))  # a service of this machine, on every address
    host_port = on_host.getsockname()[1]
    config = tmp_path_factory.mktemp("networks") / "squall.toml"
    config.write_text(
        f"""
[networks.db]
cidrs = ["{private.network}"]
ports = [5432]

[networks.open]
cidrs = ["{private.network}"]
internet = true
host_ports = [{host_port}]
"""
    )
    server = start_server(tmp_path_factory.mktemp("networks-data"), "--isolation", "linux", "--config", str(config))
    try:
        lam = server.client("lambda")
        health = json.loads(subprocess.run(["curl", "-sf", server.endpoint + "/health"], capture_output=True,
                                           text=True, timeout=30).stdout)
        networks = health["isolation"]["networks"]
        require("networks" in networks, f"environments have no networks here: {networks.get('problem')}")
        yield {"lam": lam, "server": server, "internet": internet, "private": private, "host_port": host_port,
               "networks": networks["networks"]}
    finally:
        server.stop()
        on_host.close()
        internet.stop()
        private.stop()


def probe(world, *, hold=None, meet=None, targets=(), api=False, **create):
    lam = world["lam"]
    name = create.pop("name", None) or create_function(lam, PROBE, Timeout=20, **create)
    event = {"targets": [list(t) for t in targets], "hold": hold, "meet": meet, "api": api}
    response = lam.invoke(FunctionName=name, Payload=json.dumps(event))
    body = json.loads(response["Payload"].read())
    assert "FunctionError" not in response, body
    return name, body


def test_the_default_network_reaches_the_internet_and_nothing_of_the_host(world):
    api_port = urlsplit(world["server"].endpoint).port
    gateway = world["networks"]["default"]["gateway"]
    inet, priv = world["internet"], world["private"]
    targets = [
        (inet.address, 8080), (priv.address, 5432),
        ("127.0.0.1", api_port), ("127.0.0.1", 5432),  # the sandbox's own loopback
        (gateway, api_port), (gateway, world["host_port"]), (gateway, 5432),
        *((address, world["host_port"]) for address in _host_addresses()),
        (inet.near, world["host_port"]),  # the machine's address on the stand-in's link
    ]
    _, body = probe(world, targets=targets, api=True)
    reach = body["reach"]
    assert body["interfaces"] == ["eth0", "lo"]
    assert reach.pop(f"{gateway}:{api_port}") == "ok"  # Squall's API is there for the function's SDK…
    assert body["api"] == "403 MissingAuthenticationTokenException"  # …and answers signed requests only
    assert ipaddress.IPv4Address(body["address"]) in ipaddress.IPv4Network(world["networks"]["default"]["subnet"])
    assert reach.pop(f"{inet.address}:8080") == "ok:internet:8080"
    assert reach.pop(f"{priv.address}:5432") == BLOCKED  # private ranges are not the internet
    assert reach.pop(f"127.0.0.1:{api_port}") == REFUSED
    assert reach.pop("127.0.0.1:5432") == REFUSED
    assert set(reach.values()) == {BLOCKED}, reach  # the host, at any of its addresses


def test_environments_cannot_meet(world):
    """Not over TCP (bridge ports are isolated, nothing connects into an environment), not over
    an abstract unix socket (each namespace has its own)."""
    socket_name = f"squall-meet-{random.getrandbits(32):x}"
    first, held = probe(world, hold=socket_name, meet=socket_name)
    assert held["meet"] == "ok"  # the socket is there, for its own environment
    _, mine = probe(world, name=first, targets=[(held["address"], 7000)])
    assert mine["reach"][f"{held['address']}:7000"] == "ok:env"
    _, other = probe(world, targets=[(held["address"], 7000)], meet=socket_name)
    assert other["reach"][f"{held['address']}:7000"] == BLOCKED
    assert other["meet"] == REFUSED
    assert not subprocess.run(["ss", "-xlH"], capture_output=True, text=True).stdout.count(socket_name), \
        "the abstract socket is not in the host's namespace"


def test_a_vpc_network_reaches_its_cidrs_and_ports_only(world):
    lam, inet, priv = world["lam"], world["internet"], world["private"]
    vpc = {"SubnetIds": ["subnet-db"], "SecurityGroupIds": ["sg-db"]}
    name, body = probe(world, VpcConfig=vpc, targets=[(priv.address, 5432), (priv.address, 6000), (inet.address, 8080)])
    assert body["reach"] == {f"{priv.address}:5432": "ok:private:5432", f"{priv.address}:6000": BLOCKED,
                             f"{inet.address}:8080": BLOCKED}
    assert ipaddress.IPv4Address(body["address"]) in ipaddress.IPv4Network(world["networks"]["db"]["subnet"])
    config = lam.get_function_configuration(FunctionName=name)
    assert config["VpcConfig"] == {"SubnetIds": ["subnet-db"], "SecurityGroupIds": ["sg-db"], "VpcId": "vpc-db",
                                   "Ipv6AllowedForDualStack": False}
    version = lam.publish_version(FunctionName=name)
    assert version["VpcConfig"]["VpcId"] == "vpc-db"
    # leaving the VPC: back on the default network
    lam.update_function_configuration(FunctionName=name, VpcConfig={"SubnetIds": [], "SecurityGroupIds": []})
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 100})
    assert lam.get_function_configuration(FunctionName=name)["VpcConfig"] == {
        "SubnetIds": [], "SecurityGroupIds": [], "VpcId": "", "Ipv6AllowedForDualStack": False}
    _, body = probe(world, name=name, targets=[(priv.address, 5432), (inet.address, 8080)])
    assert body["reach"] == {f"{priv.address}:5432": BLOCKED, f"{inet.address}:8080": "ok:internet:8080"}
    # the published version keeps its VPC
    _, body = probe(world, name=f"{name}:{version['Version']}", targets=[(priv.address, 5432)])
    assert body["reach"] == {f"{priv.address}:5432": "ok:private:5432"}


def test_a_network_by_tag_with_the_internet_and_a_port_of_the_host(world):
    lam, inet, priv = world["lam"], world["internet"], world["private"]
    gateway = world["networks"]["open"]["gateway"]
    targets = [(priv.address, 6000), (inet.address, 8080), (gateway, world["host_port"]),
               (gateway, urlsplit(world["server"].endpoint).port)]
    name, body = probe(world, Tags={"squall:network": "open"}, targets=targets)
    assert list(body["reach"].values()) == ["ok:private:6000", "ok:internet:8080", "ok", "ok"], body  # host port, API
    assert "VpcConfig" not in lam.get_function_configuration(FunctionName=name)
    # squall:network=none: the environments are rebuilt with no network at all
    lam.tag_resource(Resource=lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"],
                     Tags={"squall:network": "none"})
    _, body = probe(world, name=name, targets=[(inet.address, 8080), ("127.0.0.1", 5432)])
    # (a spare's eth0, made ahead, may linger a moment, down and without an address, until deleted)
    assert body["interfaces"] in (["lo"], ["eth0", "lo"]) and body["address"] is None
    assert body["reach"] == {f"{inet.address}:8080": "OSError", "127.0.0.1:5432": REFUSED}  # no route; own loopback


def test_networks_are_checked_when_named(world):
    lam = world["lam"]

    def error(**create):
        with pytest.raises(ClientError) as caught:
            create_function(lam, PROBE, **create)
        return caught.value.response["Error"]["Code"], caught.value.response["Error"]["Message"]

    assert error(VpcConfig={"SubnetIds": ["subnet-nope"], "SecurityGroupIds": []}) == (
        "InvalidParameterValueException",
        "Error occurred while DescribeSubnets. EC2 Error Code: InvalidSubnetID.NotFound. "
        "EC2 Error Message: The subnet ID 'subnet-nope' does not exist")
    assert error(VpcConfig={"SubnetIds": ["subnet-db"], "SecurityGroupIds": ["sg-nope"]})[1].endswith(
        "The security group 'sg-nope' does not exist")
    code, message = error(VpcConfig={"SubnetIds": ["subnet-db"], "SecurityGroupIds": ["sg-open"]})
    assert code == "InvalidParameterValueException" and "one Squall network" in message
    code, message = error(VpcConfig={"SubnetIds": ["db"], "SecurityGroupIds": []})
    assert code == "ValidationException" and "subnet-[0-9a-z]*" in message
    code, message = error(Tags={"squall:network": "nope"})
    assert code == "InvalidParameterValueException" and "'nope'" in message


def test_environments_keep_reaching_the_gateway_as_others_come_and_go(world):
    """A bridge takes the lowest of its ports' MAC addresses unless its own is set: a new
    environment's veth could change the gateway's address under the others, whose connections
    to the API then hung for up to 30 s (seen as a flaky recursive-loop test)."""
    bridge = world["networks"]["default"]["bridge"]
    with open(f"/sys/class/net/{bridge}/addr_assign_type") as f:
        assert f.read().strip() == "3"  # NET_ADDR_SET: the kernel will not change it
    with open(f"/sys/class/net/{bridge}/address") as f:
        before = f.read().strip()
    first, body = probe(world, api=True)
    assert body["api"] == "403 MissingAuthenticationTokenException"  # this environment knows the gateway now
    for _ in range(6):  # new environments, new ports on the bridge
        probe(world)
    _, again = probe(world, name=first, api=True)
    assert again["api"] == "403 MissingAuthenticationTokenException"
    with open(f"/sys/class/net/{bridge}/address") as f:
        assert f.read().strip() == before
