# One image for every process type of the Procfile (poller, worker, beat, flower): the
# ECS task definition chooses the command. Installs the package from pyproject.toml with
# its runtime dependencies only: no dev, test or sandbox extras, no tests, no sandbox code.
# No HEALTHCHECK here: ECS ignores image health checks and defines its own
# (deploy/ecs-task-definition.json).

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY config/ config/
COPY tasks/ tasks/
COPY worker/ worker/
# Wheels for the project and every runtime dependency: the final stage installs them
# offline and carries no build tooling.
RUN pip wheel --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --system --gid 10001 bwp \
    && useradd --system --uid 10001 --gid bwp --create-home --home-dir /home/bwp \
       --shell /usr/sbin/nologin bwp
COPY --from=build /wheels /tmp/wheels
RUN pip install --no-index --find-links /tmp/wheels bwp-worker \
    && rm -rf /tmp/wheels
# Numeric, so that a platform can verify "non-root" without reading /etc/passwd.
USER 10001:10001
WORKDIR /home/bwp
# 9102: the poller's /metrics and /healthz (METRICS_PORT); 5555: Flower.
EXPOSE 9102 5555
CMD ["bwp-worker", "--help"]
