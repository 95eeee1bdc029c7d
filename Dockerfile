# syntax=docker/dockerfile:1
# calico-exporter image: `docker build -t calico-exporter .`
# Stage 1 builds the wheel of this project and of every runtime dependency; stage 2 installs
# only those wheels (no compiler, no build tools, no test extras) and runs as a non-root user.

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN pip wheel --wheel-dir /wheels .

FROM python:3.11-slim
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
# --no-index: only the wheels built above, nothing fetched at this stage.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels /wheels/calico_exporter-*.whl \
    && groupadd --system --gid 65532 calico-exporter \
    && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin calico-exporter
# Bytecode was compiled at install time; the root filesystem is read-only at run time.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 65532:65532
EXPOSE 9808
ENTRYPOINT ["calico-exporter"]
CMD ["--help"]
