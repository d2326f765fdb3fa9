"""Networks: the settings' networks, the host's rules for them, shared addresses, and which
network a function joins."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess

import pytest
from pydantic import ValidationError

from squall.errors import InvalidParameterValue, InvalidSubnetID
from squall.functions.network import NetworkNames, vpc_api, vpc_network
from squall.sandbox.linux.network import Addresses, NetworkFull, NetworkSpec, network_specs, nameservers, ruleset
from squall.settings import Settings

NET = ipaddress.IPv4Network


def test_specs_give_each_network_a_subnet_of_its_own():
    specs = network_specs("10.213.0.0/16", {"db": {"cidrs": ["10.77.0.0/24"], "ports": [5432]}, "web": {"internet": True}})
    assert specs["default"].subnet == NET("10.213.0.0/16") and specs["default"].internet
    assert specs["db"].cidrs == (NET("10.77.0.0/24"),) and specs["db"].ports == (5432,) and not specs["db"].internet
    assert specs["db"].subnet.subnet_of(NET("10.214.0.0/15")) and specs["db"].subnet.prefixlen == 22
    assert not specs["db"].subnet.overlaps(specs["web"].subnet)
    # the same name gets the same subnet on every server of the host
    assert network_specs("10.213.0.0/16", {"db": {}})["db"].subnet == specs["db"].subnet
    assert specs["db"].bridge == "sqbr-db" and specs["db"].gateway == specs["db"].subnet.network_address + 1


@pytest.mark.parametrize("networks, problem", [
    ({"Db": {}}, "lower-case"),
    ({"default": {}}, "not 'default'"),
    ({"waytoolongname": {}}, "1-10"),
    ({"db": {"subnet": "10.213.5.0/24"}}, "overlap"),
    ({"db": {"ports": [70000]}}, "1-65535"),
    ({"db": {"subnet": "10.9.9.0/30"}}, "too small"),
    ({"db": {"cidr": ["10.0.0.0/8"]}}, "unknown keys"),
])
def test_specs_refuse_what_cannot_work(networks, problem):
    with pytest.raises(ValueError, match=problem):
        network_specs("10.213.0.0/16", networks)


def test_settings_check_their_networks():
    with pytest.raises(ValidationError, match="overlap"):
        Settings(network_subnet="10.214.0.0/15", networks={"db": {"subnet": "10.214.8.0/24"}})
    with pytest.raises(ValidationError):
        Settings(networks={"db": {"internet": "maybe"}})
    assert set(Settings(networks={"db": {}}).network_specs()) == {"default", "db"}


def test_rules_of_the_default_network():
    rules = ruleset(NetworkSpec("default", NET("10.213.0.0/16")), (ipaddress.IPv4Address("10.255.255.53"),))
    # nothing of the host, nothing into an environment; DNS to the host's servers
    filled = rules.split("flush chain")[-1]  # the chains as filled, after their declarations
    assert 'iifname "sqbr-default" drop' in filled.split("chain forward")[0]
    assert 'tcp dport @api_ports accept' in filled.split("chain forward")[0]  # Squall's API at the gateway only
    assert 'oifname "sqbr-default" drop' in rules
    assert 'ip daddr { 10.255.255.53 } udp dport 53 accept' in rules
    closed = next(line for line in rules.splitlines() if "daddr {" in line and line.strip().endswith("} drop"))
    for private in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16", "100.64.0.0/10"):
        assert private in closed
    assert "198.18" not in closed
    assert "masquerade" in rules


def test_rules_of_a_named_network():
    spec = NetworkSpec("db", NET("10.214.0.0/22"), (NET("10.77.0.0/24"),), (5432,), False, (8080,))
    rules = ruleset(spec)
    assert 'iifname "sqbr-db" ip daddr 10.77.0.0/24 tcp dport { 5432 } accept' in rules
    assert 'iifname "sqbr-db" tcp dport { 8080 } accept' in rules  # a port of the host
    assert "meta nfproto ipv4 accept" not in rules  # no internet


def test_rules_are_valid_nftables():
    nft = shutil.which("nft")
    if nft is None:
        pytest.skip("nftables is not installed")
    specs = network_specs("10.213.0.0/16", {"db": {"cidrs": ["10.77.0.0/24", "10.78.0.0/16"], "ports": [5432, 6379],
                                                  "host_ports": [8080], "internet": True}})
    script = "".join(ruleset(spec, nameservers()) for spec in specs.values())
    checked = subprocess.run([nft, "-c", "-f", "-"], input=script, capture_output=True, text=True, timeout=30)
    if checked.returncode != 0 and "Operation not permitted" in checked.stderr:
        pytest.skip("nft -c needs CAP_NET_ADMIN")
    assert checked.returncode == 0, checked.stderr


def test_addresses_are_shared_between_servers(tmp_path):
    spec = NetworkSpec("t", NET("10.99.0.0/29"))  # .2 to .6: five addresses to hand out
    one, other = Addresses(spec, tmp_path), Addresses(spec, tmp_path)
    taken = [one.take(), other.take(), one.take(), other.take(), one.take()]
    assert len(set(taken)) == 5 and all(ipaddress.IPv4Address("10.99.0.2") <= a <= ipaddress.IPv4Address("10.99.0.6")
                                        for a in taken)
    with pytest.raises(NetworkFull):
        other.take()
    one.give_back(taken[0])
    assert other.take() == taken[0]
    one.close()  # a server that ends (or dies) frees its addresses
    assert {other.take() for _ in range(2)} == {taken[2], taken[4]}
    other.close()


def test_vpc_configs_name_one_network():
    names = NetworkNames(["db", "open"])
    assert names.check_vpc({"SubnetIds": ["subnet-db"], "SecurityGroupIds": ["sg-db"]}) == {
        "SubnetIds": ["subnet-db"], "SecurityGroupIds": ["sg-db"]}
    assert names.check_vpc({}) == {"SubnetIds": [], "SecurityGroupIds": []}
    for bad, message in (
        ({"SubnetIds": ["subnet-x"]}, "The subnet ID 'subnet-x' does not exist"),
        ({"SubnetIds": ["subnet-default"]}, "does not exist"),
        ({"SubnetIds": ["subnet-db"], "SecurityGroupIds": ["sg-x"]}, "The security group 'sg-x' does not exist"),
        ({"SubnetIds": ["subnet-db", "subnet-open"]}, "one Squall network"),
        ({"SecurityGroupIds": ["sg-db"]}, "SubnetIds cannot be empty"),
    ):
        with pytest.raises(InvalidParameterValue, match=message):
            names.check_vpc(bad)
    assert vpc_api({"SubnetIds": ["subnet-db"], "SecurityGroupIds": ["sg-db"]})["VpcId"] == "vpc-db"
    assert vpc_api({"SubnetIds": [], "SecurityGroupIds": []}) == {
        "SubnetIds": [], "SecurityGroupIds": [], "VpcId": "", "Ipv6AllowedForDualStack": False}
    assert vpc_network(None) is None and vpc_network({"SubnetIds": []}) is None


def test_which_network_a_function_joins():
    names = NetworkNames(["db"])
    vpc = {"SubnetIds": ["subnet-db"], "SecurityGroupIds": []}
    assert names.network_of(None, None) == "default"
    assert names.network_of(None, "db") == "db"
    assert names.network_of(vpc, None) == "db"
    assert names.network_of(vpc, "default") == "db"  # the VPC wins over a network tag
    assert names.network_of(vpc, "none") is None  # but "none" wins over everything
    with pytest.raises(InvalidSubnetID, match="networks.gone"):
        NetworkNames().network_of({"SubnetIds": ["subnet-gone"]}, None)  # the settings lost it
    names.check_tag({"squall:network": "db"})
    with pytest.raises(InvalidParameterValue, match="'elsewhere'"):
        names.check_tag({"squall:network": "elsewhere"})
