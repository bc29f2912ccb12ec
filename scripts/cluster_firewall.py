"""Close the cluster's AWS security group to what ``cluster.yaml`` allows.

Ray's cluster launcher (2.60) creates the group named in ``provider.security_group``
with *its own* rules first: all traffic from the group itself, and SSH from 0.0.0.0/0,
and only then adds the config's ``IpPermissions``. It leaves a group that already has rules
as it is. So, run once before ``ray up`` (needs boto3 and AWS credentials)::

    python scripts/cluster_firewall.py cluster.yaml

It creates the group in the VPC Ray will use (the VPC of the first public subnet in the
configured availability zones, as Ray picks it; ``--vpc-id`` to name another) with exactly:
all traffic from the group itself (Ray, MLflow and the object store between the nodes) and
the config's ``IpPermissions`` (SSH from your address range), and it revokes any rule open to
the whole internet. Run again at any time to re-close the group.

``--own`` is what the head node runs in its setup (cluster.yaml): it revokes rules open to
the whole internet on the groups of the instance it runs on, in case the group was made by
``ray up`` without this script.

The config is checked first, with no AWS call: a rule open to the whole internet, or the
placeholder range left in place, is refused.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from pathlib import Path
from typing import Any

WORLD = ("0.0.0.0/0", "::/0")
PLACEHOLDER = "203.0.113.0/24"  # TEST-NET-3 (RFC 5737): reaches nobody, must be replaced


class FirewallConfigError(ValueError):
    """cluster.yaml's security-group section would not close the cluster."""


def security_group(config: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """``(GroupName, IpPermissions)`` from a cluster config, checked: a name, at least one
    rule, every rule with address ranges, none open to the whole internet, and the
    placeholder range replaced."""
    sg = (config.get("provider") or {}).get("security_group") or {}
    name, rules = sg.get("GroupName"), sg.get("IpPermissions")
    where = "cluster.yaml: provider.security_group"
    if not isinstance(name, str) or not name:
        raise FirewallConfigError(f"{where}.GroupName: name the cluster's own group")
    if not isinstance(rules, list) or not rules:
        raise FirewallConfigError(f"{where}.IpPermissions: list the rules (SSH from your "
                                  "address range)")
    for i, rule in enumerate(rules):
        ranges = [r.get("CidrIp") for r in rule.get("IpRanges", [])] + [
            r.get("CidrIpv6") for r in rule.get("Ipv6Ranges", [])]
        if not ranges:
            raise FirewallConfigError(f"{where}.IpPermissions[{i}]: no IpRanges")
        for cidr in ranges:
            if cidr in WORLD:
                raise FirewallConfigError(f"{where}.IpPermissions[{i}]: {cidr} opens port "
                                          f"{rule.get('FromPort')} to the whole internet; "
                                          "give your own address range")
            if cidr == PLACEHOLDER:
                raise FirewallConfigError(f"{where}.IpPermissions[{i}]: {cidr} is the "
                                          "placeholder; set your own address range (e.g. "
                                          "your public IP with /32)")
    return name, rules


def wanted_rules(group_id: str, rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The group's complete ingress: everything from the group itself, then ``rules``."""
    return [{"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": group_id}]}, *rules]


def world_open(permissions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The parts of ``permissions`` (EC2's IpPermissions) that admit the whole internet,
    shaped for ``revoke_security_group_ingress``."""
    out = []
    for p in permissions:
        v4 = [r for r in p.get("IpRanges", []) if r.get("CidrIp") in WORLD]
        v6 = [r for r in p.get("Ipv6Ranges", []) if r.get("CidrIpv6") in WORLD]
        if v4 or v6:
            rule = {k: p[k] for k in ("IpProtocol", "FromPort", "ToPort") if k in p}
            if v4:
                rule["IpRanges"] = [{"CidrIp": r["CidrIp"]} for r in v4]
            if v6:
                rule["Ipv6Ranges"] = [{"CidrIpv6": r["CidrIpv6"]} for r in v6]
            out.append(rule)
    return out


def _vpc_like_ray(ec2, config: dict[str, Any]) -> str:
    azs = [a.strip() for a in str(config["provider"].get("availability_zone", "")).split(",")
           if a.strip()]
    subnets = [s for s in ec2.describe_subnets()["Subnets"]
               if s["State"] == "available" and s.get("MapPublicIpOnLaunch")]
    for az in azs or sorted({s["AvailabilityZone"] for s in subnets}, reverse=True):
        for s in subnets:
            if s["AvailabilityZone"] == az:
                return s["VpcId"]
    sys.exit(f"no public subnet in {azs or 'the region'}: pass --vpc-id")


def close_group(config: dict[str, Any], vpc_id: str | None) -> None:
    import boto3

    name, rules = security_group(config)
    ec2 = boto3.client("ec2", region_name=config["provider"]["region"])
    vpc_id = vpc_id or _vpc_like_ray(ec2, config)
    found = ec2.describe_security_groups(Filters=[
        {"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "group-name", "Values": [name]}])
    if found["SecurityGroups"]:
        group = found["SecurityGroups"][0]
        group_id, current = group["GroupId"], group["IpPermissions"]
    else:
        group_id = ec2.create_security_group(
            GroupName=name, VpcId=vpc_id, Description="nfbench cluster: SSH from the admin "
            "range, everything else only from the group itself")["GroupId"]
        current = []
    missing = [r for r in wanted_rules(group_id, rules) if not _present(r, current)]
    if missing:
        ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=missing)
    _revoke_world(ec2, group_id, current)
    print(f"{name} ({group_id}) in {vpc_id}: ingress from the group itself and "
          f"{json.dumps(rules)}")


def _present(rule: dict[str, Any], current: list[dict[str, Any]]) -> bool:
    key = ("IpProtocol", "FromPort", "ToPort")
    for c in current:
        if all(c.get(k) == rule.get(k) for k in key if k in rule):
            have = ({r.get("CidrIp") for r in c.get("IpRanges", [])}
                    | {g.get("GroupId") for g in c.get("UserIdGroupPairs", [])})
            need = ({r.get("CidrIp") for r in rule.get("IpRanges", [])}
                    | {g.get("GroupId") for g in rule.get("UserIdGroupPairs", [])})
            if need <= have:
                return True
    return False


def _revoke_world(ec2, group_id: str, current: list[dict[str, Any]]) -> None:
    open_parts = world_open(current)
    if open_parts:
        ec2.revoke_security_group_ingress(GroupId=group_id, IpPermissions=open_parts)
        print(f"{group_id}: revoked {len(open_parts)} rule(s) open to the whole internet")


def _metadata(path: str) -> str:
    """EC2 instance metadata (IMDSv2)."""
    base = "http://169.254.169.254/latest"
    req = urllib.request.Request(f"{base}/api/token", method="PUT",
                                 headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})
    with urllib.request.urlopen(req, timeout=5) as r:
        token = r.read().decode()
    req = urllib.request.Request(f"{base}/meta-data/{path}",
                                 headers={"X-aws-ec2-metadata-token": token})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.read().decode()


def close_own_groups(config: dict[str, Any]) -> None:
    import boto3

    ec2 = boto3.client("ec2", region_name=config["provider"]["region"])
    instance = _metadata("instance-id")
    reservations = ec2.describe_instances(InstanceIds=[instance])["Reservations"]
    groups = [g["GroupId"] for r in reservations for i in r["Instances"]
              for g in i["SecurityGroups"]]
    for g in ec2.describe_security_groups(GroupIds=groups)["SecurityGroups"]:
        _revoke_world(ec2, g["GroupId"], g["IpPermissions"])


def main(argv: list[str] | None = None) -> int:
    import yaml

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("config", nargs="?", default="cluster.yaml")
    p.add_argument("--vpc-id", default=None, help="the VPC to create the group in")
    p.add_argument("--own", action="store_true",
                   help="on a cluster node: revoke world-open rules of its own groups")
    args = p.parse_args(argv)
    config = yaml.safe_load(Path(args.config).expanduser().read_text())
    try:
        if args.own:
            close_own_groups(config)
        else:
            close_group(config, args.vpc_id)
    except FirewallConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
