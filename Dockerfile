# syntax=docker/dockerfile:1
# The calico-exporter image. Build it with `make image` (README, "Build the image"): the wheels of
# the project, of its runtime dependencies and of pip are made on the host first, into
# build/image/wheels, and build/image is the build context, so this build fetches nothing.
# BASE_IMAGE: any Debian-based image with Python 3.11 as python3; the default is the public slim
# image, the tests use a local debootstrap of Debian 12 and its python3 (tools/image.py base).
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS install
COPY wheels/ /wheels/
# pip runs from its own wheel: the base needs no pip and the image gets none. Bytecode is
# compiled here because the root filesystem is read-only at run time. What nothing reads stays
# out (24 MB, more than grpcio and protobuf add): type stubs and READMEs, and the sources of
# kubernetes-asyncio's generated API and model classes (its client package imports them all, the
# exporter calls none: it speaks raw JSON), which keep only their bytecode, where the sources were
# (Python imports such sourceless modules).
RUN set -- /wheels/pip-*.whl \
    && python3 -m venv --without-pip /opt/calico-exporter \
    && /opt/calico-exporter/bin/python "$1/pip" install --no-index --no-cache-dir --no-compile \
       --disable-pip-version-check --find-links /wheels calico-exporter \
    && site="$(/opt/calico-exporter/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" \
    && find "$site" \( -name '*.pyi' -o -name '*.md' \) -type f -delete \
    && /opt/calico-exporter/bin/python -m compileall -q -j 0 -b \
       "$site/kubernetes_asyncio/client/api" "$site/kubernetes_asyncio/client/models" \
    && find "$site/kubernetes_asyncio/client/api" "$site/kubernetes_asyncio/client/models" \
       -name '*.py' -type f -delete \
    && /opt/calico-exporter/bin/python -m compileall -q -j 0 /opt/calico-exporter/lib

FROM ${BASE_IMAGE}
COPY --from=install /opt/calico-exporter /opt/calico-exporter
ENV PATH=/opt/calico-exporter/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 65532:65532
EXPOSE 9808
ENTRYPOINT ["calico-exporter"]
CMD ["--help"]
