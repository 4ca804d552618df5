# syntax=docker/dockerfile:1
# email-status-worker: multi-stage build from the lock file; runs as a non-root user on a
# read-only root file system (the only writable path it needs is /tmp, an emptyDir in the chart).
# scripts/image-check.sh lints this file with hadolint and replays the two pip steps outside
# Docker; no Docker engine runs in CI, so `docker build` itself is not exercised there.

# The base, pinned by the digest of its multi-platform index, so a rebuild gets the same bytes
# until someone bumps it on purpose: scripts/bump-base-image.sh (needs Docker or crane) resolves
# the tag's current digest and rewrites this line; rebuild, run the tests, commit.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

# ---- build: a virtualenv with the pinned dependencies and the package -----------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, from the lock only: this layer stays cached until the lock changes.
COPY requirements.lock ./
# Every file checked against the lock's sha256 (scripts/hash-lock.py): no unpinned runtime dependency
# gets in. (The package's own build below fetches its build backend, setuptools and wheel, from the
# index in pip's isolated build: it builds the wheel and is not installed.)
RUN pip install -r requirements.lock --require-hashes
COPY pyproject.toml README.md ./
COPY schemas/ ./schemas/
COPY worker/ ./worker/
# The package itself, without resolving anything beyond the lock (pip byte-compiles it here, as
# the runtime cannot write __pycache__ on a read-only root).
RUN pip install --no-deps . \
 && email-status-worker --help >/dev/null

# ---- runtime -------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG UID=10001
ARG GID=10001
RUN groupadd --system --gid "${GID}" esw \
 && useradd --system --no-log-init --uid "${UID}" --gid esw --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin esw
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONFAULTHANDLER=1 \
    TMPDIR=/tmp
WORKDIR /tmp
USER ${UID}:${GID}
# The one service port: webhooks, /healthz, /readyz, /metrics, /status (config http.port).
EXPOSE 8080
# Exec form: the worker is PID 1 and receives SIGTERM itself (graceful shutdown).
ENTRYPOINT ["email-status-worker"]
CMD ["run", "--config", "/etc/email-status-worker/config.yaml"]
