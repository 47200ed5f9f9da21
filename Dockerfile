# One image for every process type of the Procfile (poller, worker, beat, flower): the
# ECS task definition chooses the command. Installs the package with its runtime
# dependencies only: no dev, test or sandbox extras, no tests, no sandbox code.
# No HEALTHCHECK here: ECS ignores image health checks and defines its own
# (deploy/ecs-task-definition.json).
#
# Reproducible: the base image is pinned by digest (one ARG for both stages), every Python
# distribution by version and sha256 (requirements.lock for the runtime,
# requirements-build.lock for the build backend; both from `make lock`), and pip refuses
# anything unhashed (--require-hashes) or needing a compiler (--only-binary).
# To move to the newest python:3.11-slim, print its index digest and replace the one below:
#   docker buildx imagetools inspect python:3.11-slim --format '{{json .Manifest.Digest}}'
# The digest below was written without registry access: refresh it before the first build
# (docs/operations.md, "Rebuild the image").
ARG PYTHON_IMAGE=python:3.11-slim@sha256:d3201f8bee300a37f945f440bee53e8e7e07f033d5b6fde80aca2115fc2607a8

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY requirements.lock requirements-build.lock ./
# The runtime's locked wheels, hash-checked here, so that the final stage installs offline.
RUN pip download --no-deps --require-hashes --only-binary :all: --dest /wheels \
        -r requirements.lock
# The build backend at its locked versions; no build isolation, so that building the
# project's wheel fetches nothing unpinned.
RUN pip install --no-deps --require-hashes --only-binary :all: -r requirements-build.lock
COPY pyproject.toml README.md ./
COPY config/ config/
COPY tasks/ tasks/
COPY worker/ worker/
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /project .

FROM ${PYTHON_IMAGE}
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --system --gid 10001 bwp \
    && useradd --system --uid 10001 --gid bwp --create-home --home-dir /home/bwp \
       --shell /usr/sbin/nologin bwp
COPY --from=build /src/requirements.lock /tmp/requirements.lock
COPY --from=build /wheels /tmp/wheels
COPY --from=build /project /tmp/project
# The lock first (every pin, every hash), then the project itself without resolving
# anything; pip check proves the lock satisfies what the project declares.
RUN pip install --no-index --find-links /tmp/wheels --no-deps --require-hashes \
        -r /tmp/requirements.lock \
    && pip install --no-index --no-deps /tmp/project/*.whl \
    && pip check \
    && rm -rf /tmp/wheels /tmp/project /tmp/requirements.lock
# Numeric, so that a platform can verify "non-root" without reading /etc/passwd.
USER 10001:10001
WORKDIR /home/bwp
# 9102: the poller's /metrics and /healthz (METRICS_PORT); 5555: Flower.
EXPOSE 9102 5555
CMD ["bwp-worker", "--help"]
