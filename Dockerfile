# One image for every process type of the Procfile (poller, worker, beat, flower): the
# ECS task definition chooses the command. Installs the package with its runtime
# dependencies only: no dev, test or sandbox extras, no tests, no sandbox code.
# No HEALTHCHECK here: ECS ignores image health checks and defines its own
# (deploy/cloudformation/bwp-worker.yaml).
#
# Build it for the platform the task definitions run (X86_64), whatever the machine:
#   docker buildx build --platform linux/amd64 -t bwp-worker:$VERSION .
#
# Reproducible: the base image is pinned by digest (one `base` stage for both stages
# below), every Python distribution by version and sha256 (requirements.lock for the
# runtime, requirements-build.lock for the build backend; both from `make lock`), and pip
# refuses anything unhashed (--require-hashes) or needing a compiler (--only-binary).
#
# The base: python:3.11-slim's multi-platform index digest for Python 3.11.16 (Debian
# trixie, pushed 2026-08-16), as recorded in many public Dockerfiles and build records;
# it could not be inspected from the machine that wrote this line (no registry access).
# --platform=linux/amd64 picks the amd64 image from that index. Dependabot proposes new
# digests (.github/dependabot.yml; it reads FROM lines, not ARGs, hence the stage). By
# hand, print the current index digest and replace the one below:
#   docker buildx imagetools inspect python:3.11-slim --format '{{json .Manifest.Digest}}'
FROM --platform=linux/amd64 python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7 AS base

FROM base AS build
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
COPY pyproject.toml README.md LICENSE ./
COPY config/ config/
COPY tasks/ tasks/
COPY worker/ worker/
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /project .

FROM base
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
# 9102: the poller's /metrics and /healthz (METRICS_PORT); 9103: a Celery worker's
# /metrics (WORKER_METRICS_PORT); 5555: Flower.
EXPOSE 9102 9103 5555
CMD ["bwp-worker", "--help"]
