"""Each process's task role grants exactly the SQS actions its code calls.

Code is mapped to processes by entry point, not by file path, so that moving modules
around does not change the answer:

- poller: what the ``bwp-worker poll`` command reaches (its body's imports and theirs);
- operators: what every other ``bwp-worker`` sub-command reaches (the demo's excepted),
  run as the template's operator task definition;
- worker: the bodies of the tasks registered on the app ``celery -A tasks`` finds;
- beat and Flower load that app only and run none of its task bodies.

"Reaches" is the transitive closure of imports over the shipped packages (pyproject's
``packages.find`` minus the sandbox), found by reading the source; an SQS call is any
``.<operation>(`` of botocore's SQS model. A batch operation needs its single-message
action (``SendMessageBatch`` -> ``sqs:SendMessage``).
"""

from __future__ import annotations

import ast
import inspect
import textwrap
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import botocore.session
import click
import pytest
from botocore import xform_name

from tests.unit import cfn

ROOT = Path(__file__).resolve().parents[2]
#: the operator task definition's container (run-task with a command override)
OPERATOR_CONTAINER = "ops"
#: Celery processes that load the app from ``tasks`` but never execute a task body
APP_ONLY = ("beat", "flower")


# --- the code: modules, their imports, their SQS calls ------------------------------------
@cache
def sqs_actions() -> dict[str, str]:
    """boto3 method name -> the IAM action it needs, from botocore's SQS model."""
    model = botocore.session.get_session().get_service_model("sqs")
    return {xform_name(op): "sqs:" + op.removesuffix("Batch") for op in model.operation_names}


@dataclass
class Module:
    name: str
    imports: set[str] = field(default_factory=set)
    actions: set[str] = field(default_factory=set)


def calls_and_imports(tree: ast.AST, package: str) -> tuple[set[str], set[str]]:
    """The SQS actions called and the module names imported anywhere inside ``tree``."""
    actions: set[str] = set()
    imports: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if action := sqs_actions().get(node.func.attr):
                actions.add(action)
        elif isinstance(node, ast.Import):
            imports |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            imports.add(base)
            imports |= {f"{base}.{alias.name}" for alias in node.names}
    return actions, imports


@cache
def shipped_packages() -> tuple[str, ...]:
    found = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return tuple(p.rstrip("*.") for p in found["packages"]["find"]["include"] if "sandbox" not in p)


@cache
def modules() -> dict[str, Module]:
    """Every module of the shipped packages, by dotted name."""
    found = {}
    for package in shipped_packages():
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            name = ".".join(parts)
            actions, imports = calls_and_imports(
                ast.parse(path.read_text()), name if is_package else name.rpartition(".")[0]
            )
            found[name] = Module(name, imports, actions)
    return found


def parents(name: str) -> list[str]:
    """``tasks.dlq`` -> ``["tasks"]``: importing a module runs its packages' __init__ first."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def reach(roots: Iterable[str]) -> set[str]:
    """The shipped modules importing ``roots`` runs, transitively."""
    known = modules()
    seen: set[str] = set()
    todo = [r for r in roots if r in known]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += [m for m in [*known[name].imports, *parents(name)] if m in known]
    return seen


def command_actions(command: click.Command) -> set[str]:
    """What one CLI command calls: its own body, its module's top level, and what they reach."""
    callback = inspect.unwrap(command.callback)  # type: ignore[arg-type]
    module = callback.__module__
    body = ast.parse(textwrap.dedent(inspect.getsource(callback)))
    actions, imports = calls_and_imports(body, module.rpartition(".")[0])
    top_level = ast.parse(Path(inspect.getfile(callback)).read_text())
    top_level.body = [n for n in top_level.body if isinstance(n, ast.Import | ast.ImportFrom)]
    imports |= calls_and_imports(top_level, module.rpartition(".")[0])[1]
    for name in reach([*imports, *parents(module)]):
        actions |= modules()[name].actions
    return actions


def cli_commands() -> dict[str, click.Command]:
    from worker.cli import cli

    return dict(cli.commands)


def is_demo(command: click.Command) -> bool:
    """The demo's commands run the sandbox; they are not deployed."""
    module = command.callback.__module__ if command.callback else ""
    return "demo" in module.split(".")[-1] or module.startswith("sandbox")


def celery_app() -> Any:
    """The app ``celery -A tasks`` runs, found the way Celery finds it."""
    from celery.app.utils import find_app

    return find_app("tasks")


def task_modules() -> set[str]:
    """The modules defining the bodies of the app's own tasks (Celery's built-ins excluded)."""
    app = celery_app()
    return {
        inspect.unwrap(task.run).__module__
        for name, task in app.tasks.items()
        if not name.startswith("celery.")
    }


@cache
def code_actions() -> dict[str, set[str]]:
    """Process -> the SQS actions its code can call."""
    commands = cli_commands()
    operators: set[str] = set()
    for name, command in commands.items():
        if name != "poll" and not is_demo(command):
            operators |= command_actions(command)
    worker: set[str] = set()
    for name in reach(task_modules()):
        worker |= modules()[name].actions
    return {
        "poller": command_actions(commands["poll"]),
        "worker": worker,
        **{process: set() for process in APP_ONLY},
        "operators": operators,
    }


# --- the roles: the template's task definitions -> task role -> its policies --------------
def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@cache
def roles() -> dict[str, dict[str, set[str]]]:
    """Role (logical id) -> resource (resolved ARN) -> actions granted."""
    granted: dict[str, dict[str, set[str]]] = {}
    for logical, role in cfn.resources("AWS::IAM::Role").items():
        if logical == "ExecutionRole":
            continue  # ECS's, not a process's
        grants = granted.setdefault(logical, {})
        for policy in role["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                assert statement["Effect"] == "Allow", logical
                for resource in as_list(cfn.resolve(statement["Resource"])):
                    grants.setdefault(resource, set()).update(as_list(statement["Action"]))
    return granted


@cache
def role_of_process() -> dict[str, str]:
    """Process -> task role: each service's task definition's, and the operator task's."""
    found = {}
    for definition in cfn.resources("AWS::ECS::TaskDefinition").values():
        properties = definition["Properties"]
        [container] = properties["ContainerDefinitions"]
        name = "operators" if container["Name"] == OPERATOR_CONTAINER else container["Name"]
        found[name] = cfn.logical_id(properties["TaskRoleArn"])
    return found


def granted_actions(process: str) -> set[str]:
    grants = roles()[role_of_process()[process]]
    return {action for actions in grants.values() for action in actions}


def queue_arns() -> tuple[str, str]:
    env: dict[str, Any] = {}
    for container in cfn.containers().values():
        for item in container.get("Environment", []):
            env[item["Name"]] = item["Value"]

    def arn(url: str) -> str:
        host, account, name = url.removeprefix("https://").split("/")
        return f"arn:aws:sqs:{host.split('.')[1]}:{account}:{name}"

    return arn(env["SQS_QUEUE_URL"]), arn(env["SQS_DLQ_URL"])


PROCESSES = ("poller", "worker", "beat", "flower", "operators")


# --- the tests -----------------------------------------------------------------------------
def test_every_process_has_a_role_of_its_own() -> None:
    # Given the task definitions and the operators' role
    mapping = role_of_process()
    # Then there are five roles, one per process, and no role without a process
    assert set(mapping) == set(PROCESSES)
    assert len(set(mapping.values())) == len(PROCESSES), mapping
    assert set(mapping.values()) == set(roles())


@pytest.mark.parametrize("process", PROCESSES)
def test_a_role_grants_every_action_its_process_calls(process: str) -> None:
    # Given the SQS calls the process's code makes
    needed = code_actions()[process]
    # Then its role grants each of them
    missing = needed - granted_actions(process)
    assert not missing, f"{process} calls {sorted(missing)}; {role_of_process()[process]} lacks"


@pytest.mark.parametrize("process", PROCESSES)
def test_a_role_grants_nothing_its_process_does_not_call(process: str) -> None:
    extra = granted_actions(process) - code_actions()[process]
    assert not extra, f"{role_of_process()[process]} grants {sorted(extra)}, never called"


def test_the_scan_finds_the_calls_it_should() -> None:
    # The scan itself works: the known calls of today's code are found where expected.
    assert {"sqs:ReceiveMessage", "sqs:DeleteMessage"} <= code_actions()["poller"]
    assert "sqs:SendMessage" in code_actions()["worker"]
    assert "sqs:GetQueueAttributes" in code_actions()["operators"]
    assert "sqs:GetQueueAttributes" in code_actions()["poller"]  # the start check
    assert code_actions()["worker"] != code_actions()["operators"]
    actions, _ = calls_and_imports(ast.parse("c.change_message_visibility_batch(Entries=[])"), "")
    assert actions == {"sqs:ChangeMessageVisibility"}


def test_beat_and_flower_run_no_task_body() -> None:
    # Beat only publishes its schedule's tasks to the broker; the worker runs them.
    app = celery_app()
    schedule = app.conf.beat_schedule
    assert schedule
    for entry in schedule.values():
        assert entry["task"] in app.tasks, entry


def test_each_role_touches_only_the_queues_it_should() -> None:
    # Given the event queue and the DLQ the task definitions name
    queue, dlq = queue_arns()
    # Then the grants per queue are these (the poller and operators alone touch the queue)
    expected = {
        "poller": {
            queue: {
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:ChangeMessageVisibility",
                "sqs:GetQueueAttributes",
            },
            dlq: {"sqs:SendMessage", "sqs:GetQueueAttributes"},
        },
        "worker": {dlq: {"sqs:SendMessage"}},
        "beat": {},
        "flower": {},
        "operators": {
            queue: {"sqs:SendMessage", "sqs:GetQueueAttributes"},
            dlq: {
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:ChangeMessageVisibility",
                "sqs:GetQueueAttributes",
            },
        },
    }
    for process, grants in expected.items():
        assert roles()[role_of_process()[process]] == grants, process


def test_roles_are_assumed_by_ecs_tasks_of_this_account_only() -> None:
    for logical, role in cfn.resources("AWS::IAM::Role").items():
        [statement] = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert statement["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}, logical
        assert statement["Action"] == "sts:AssumeRole"
        account = statement["Condition"]["StringEquals"]["aws:SourceAccount"]
        assert account == {"Ref": "AWS::AccountId"}, logical
