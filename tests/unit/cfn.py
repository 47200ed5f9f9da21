"""Read deploy/cloudformation/bwp-worker.yaml as the tests need it (this module holds no tests).

``template()`` is the YAML with its short-form intrinsics (``!Ref``, ``!Sub``, ``!GetAtt``)
in their long form; ``resolve()`` evaluates the few the template uses, with the
parameters' defaults and example values for the parameters that have none, in account
``123456789012`` and region ``us-east-1``, as CloudFormation would.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "cloudformation" / "bwp-worker.yaml"
ACCOUNT, REGION = "123456789012", "us-east-1"
#: values for the parameters without a default, as an operator would give them
EXAMPLE_PARAMETERS = {
    "VpcId": "vpc-0123456789abcdef0",
    "SubnetIds": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"],
    "MonitoringCidr": "10.0.0.0/16",
    "PartnerEventBusName": "aws.partner/buywithprime.com/example/bwp-events",
    "ApiSecretArn": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:bwp-worker/api-AbCdEf",
    "RedisSecretArn": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:bwp-worker/redis-AbCdEf",
    "FlowerSecretArn": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:bwp-worker/flower-AbCd",
    "RedisSecurityGroupId": "sg-0123456789abcdef0",
    "BwpClientId": "amzn1.application-oa2-client.example",
    "OmsUrl": "https://oms.example.com/bwp/deliveries",
}
PSEUDO = {"AWS::AccountId": ACCOUNT, "AWS::Region": REGION, "AWS::Partition": "aws"}


class _Loader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form tags."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_Loader.add_multi_constructor("!", _intrinsic)


@cache
def template() -> dict[str, Any]:
    document = yaml.load(TEMPLATE.read_text(), Loader=_Loader)
    assert isinstance(document, dict)
    return document


def resources(kind: str | None = None) -> dict[str, dict[str, Any]]:
    """Logical id -> resource, of one type when ``kind`` is given."""
    found = template()["Resources"]
    return {k: r for k, r in found.items() if kind is None or r["Type"] == kind}


def parameter(name: str) -> Any:
    spec = template()["Parameters"][name]
    return spec["Default"] if "Default" in spec else EXAMPLE_PARAMETERS[name]


def _physical_name(logical: str) -> str:
    resource = resources()[logical]
    props = resource.get("Properties", {})
    for key in (
        "QueueName",
        "ClusterName",
        "ServiceName",
        "Family",
        "Name",
        "TopicName",
        "LogGroupName",
    ):
        if key in props:
            return str(resolve(props[key]))
    return f"{logical}-generated"


def _ref(name: str) -> Any:
    if name in PSEUDO:
        return PSEUDO[name]
    if name in template()["Parameters"]:
        return parameter(name)
    kind = resources()[name]["Type"]
    physical = _physical_name(name)
    if kind == "AWS::SQS::Queue":
        return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{physical}"
    return physical


def _attribute(logical: str, attribute: str) -> str:
    kind = resources()[logical]["Type"]
    physical = _physical_name(logical)
    if attribute in {"QueueName", "Name"}:
        return physical
    if kind == "AWS::SQS::Queue":
        return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{physical}"
    if kind == "AWS::IAM::Role":
        return f"arn:aws:iam::{ACCOUNT}:role/{physical}"
    service = kind.split("::")[1].lower()
    return f"arn:aws:{service}:{REGION}:{ACCOUNT}:{logical}/{physical}"


def resolve(value: Any) -> Any:  # noqa: PLR0911 - one return per intrinsic
    """``value`` with Ref, Fn::Sub, Fn::GetAtt and Fn::Join evaluated."""
    if isinstance(value, list):
        return [resolve(v) for v in value]
    if not isinstance(value, dict):
        return value
    if list(value) == ["Ref"]:
        return _ref(value["Ref"])
    if list(value) == ["Fn::GetAtt"]:
        return _attribute(*value["Fn::GetAtt"])
    if list(value) == ["Fn::Sub"]:
        return re.sub(r"\$\{([^}]+)\}", lambda m: str(_sub_var(m.group(1))), value["Fn::Sub"])
    if list(value) == ["Fn::Join"]:
        separator, items = value["Fn::Join"]
        return separator.join(str(resolve(i)) for i in items)
    return {k: resolve(v) for k, v in value.items()}


def _sub_var(name: str) -> Any:
    if "." in name and name not in PSEUDO:
        return _attribute(*name.split(".", 1))
    return _ref(name)


def logical_id(value: Any) -> str:
    """The resource a ``Ref`` or ``Fn::GetAtt`` names."""
    if isinstance(value, dict) and "Ref" in value:
        return str(value["Ref"])
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return str(value["Fn::GetAtt"][0])
    raise AssertionError(f"not a reference to a resource: {value!r}")


def containers() -> dict[str, dict[str, Any]]:
    """Container name -> its definition (resolved), one per task definition."""
    found = {}
    for definition in resources("AWS::ECS::TaskDefinition").values():
        [container] = definition["Properties"]["ContainerDefinitions"]
        found[container["Name"]] = resolve(container)
    return found


def task_definition_of(container_name: str) -> tuple[str, dict[str, Any]]:
    """(logical id, properties) of the task definition running ``container_name``."""
    for logical, definition in resources("AWS::ECS::TaskDefinition").items():
        [container] = definition["Properties"]["ContainerDefinitions"]
        if container["Name"] == container_name:
            return logical, definition["Properties"]
    raise KeyError(container_name)
