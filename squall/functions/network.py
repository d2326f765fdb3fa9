"""Which network a function's environments join: its ``VpcConfig``, or the tag ``squall:network``.

The networks themselves are defined in the settings (``networks``; the sandbox side is
``squall/sandbox/linux/network.py``). A function names one:

* ``VpcConfig``: every id of ``SubnetIds`` is ``subnet-<name>`` and every id of
  ``SecurityGroupIds`` is ``sg-<name>``, all of one network. The configuration then shows
  ``VpcId`` ``vpc-<name>``. Empty lists leave the VPC (the function is back on the tag's
  network, or the default one).
* the tag ``squall:network``: ``none`` (no network at all: only the sandbox's loopback,
  which wins over everything), ``default``, or a network's name.

A function in no VPC and with no tag is on ``default``: the internet, not the host.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from squall.errors import InvalidParameterValue, InvalidSubnetID

NETWORK_TAG = "squall:network"
DEFAULT = "default"
NO_NETWORK = "none"
SUBNET, SECURITY_GROUP, VPC = "subnet-", "sg-", "vpc-"


def vpc_network(vpc_config: Mapping[str, Any] | None) -> str | None:
    """The network a stored VpcConfig names (None: no VPC)."""
    if not vpc_config or not vpc_config.get("SubnetIds"):
        return None
    return str(vpc_config["SubnetIds"][0])[len(SUBNET):]


def vpc_api(vpc_config: Mapping[str, Any]) -> dict[str, Any]:
    """VpcConfig as Lambda shows it (VpcId empty once the VPC was left)."""
    network = vpc_network(vpc_config)
    return {
        "SubnetIds": list(vpc_config.get("SubnetIds") or []),
        "SecurityGroupIds": list(vpc_config.get("SecurityGroupIds") or []),
        "VpcId": VPC + network if network else "",
        "Ipv6AllowedForDualStack": bool(vpc_config.get("Ipv6AllowedForDualStack", False)),
    }


class NetworkNames:
    """The networks this server's settings define (``default`` always)."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        self.names = frozenset(names) | {DEFAULT}

    def check_tag(self, tags: Mapping[str, str]) -> None:
        value = tags.get(NETWORK_TAG)
        if value is not None and value != NO_NETWORK and value not in self.names:
            raise InvalidParameterValue(
                f"Tag {NETWORK_TAG} must be '{NO_NETWORK}' (no network), '{DEFAULT}' or a network of this server's "
                f"settings ({', '.join(sorted(self.names))}); got '{value}'."
            )

    def check_vpc(self, vpc_config: Mapping[str, Any]) -> dict[str, Any]:
        """A VpcConfig as given (the model checked the id patterns) → what is stored."""
        subnets = [str(s) for s in vpc_config.get("SubnetIds") or []]
        groups = [str(g) for g in vpc_config.get("SecurityGroupIds") or []]
        for subnet in subnets:
            if subnet[len(SUBNET):] not in self.names - {DEFAULT}:
                raise InvalidParameterValue(
                    "Error occurred while DescribeSubnets. EC2 Error Code: InvalidSubnetID.NotFound. "
                    f"EC2 Error Message: The subnet ID '{subnet}' does not exist"
                )
        for group in groups:
            if group[len(SECURITY_GROUP):] not in self.names - {DEFAULT}:
                raise InvalidParameterValue(
                    "Error occurred while DescribeSecurityGroups. EC2 Error Code: InvalidGroup.NotFound. "
                    f"EC2 Error Message: The security group '{group}' does not exist"
                )
        named = {s[len(SUBNET):] for s in subnets} | {g[len(SECURITY_GROUP):] for g in groups}
        if len(named) > 1:
            raise InvalidParameterValue(
                "Subnets and security groups must all name one Squall network "
                f"(subnet-<name>, sg-<name>); these name {', '.join(sorted(named))}."
            )
        if groups and not subnets:
            raise InvalidParameterValue("SubnetIds cannot be empty when SecurityGroupIds are given.")
        stored: dict[str, Any] = {"SubnetIds": subnets, "SecurityGroupIds": groups}
        if vpc_config.get("Ipv6AllowedForDualStack"):
            stored["Ipv6AllowedForDualStack"] = True
        return stored

    def network_of(self, vpc_config: Mapping[str, Any] | None, tag: str | None) -> str | None:
        """The network an environment joins (None: none at all), or InvalidSubnetID when the
        settings no longer define the one the function names."""
        if tag == NO_NETWORK:
            return None
        network = vpc_network(vpc_config) or tag or DEFAULT
        if network not in self.names:
            raise InvalidSubnetID(
                f"The function's network '{network}' is not defined in this Squall server's settings "
                f"(networks.{network}); define it, or change the function's VpcConfig or {NETWORK_TAG} tag."
            )
        return network
