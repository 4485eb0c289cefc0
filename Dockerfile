# syntax=docker/dockerfile:1
# router-proxy: the gateway image. Build: `docker build -t router-proxy .`
# Two stages: the builder installs the package (and only its runtime dependencies: no
# torch, the default encoder is the static model2vec model shipped as package data) into
# a virtualenv; the final stage copies that venv onto a clean slim base and runs as an
# unprivileged user. Nothing is downloaded at run time: tiktoken's vocabulary, fastText's
# language model and the embedding model are all package data inside the venv.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY router_proxy ./router_proxy
# A regular (not editable) install: the package and its data are copied into the venv.
# With the tracing extra, so a policy's `tracing:` section works in the image (the SDK is
# imported only when one is set).
RUN pip install --no-cache-dir "./[tracing]"
# Smoke test, offline: building every example policy loads the bundled static encoder,
# fastText's language model and the tokenizer from the venv (placeholder keys only).
COPY configs ./configs
RUN for policy in configs/*.yaml; do \
      HF_HUB_OFFLINE=1 OPENAI_API_KEY=placeholder ANTHROPIC_API_KEY=placeholder \
        router-proxy validate "$policy" || exit 1; \
    done

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="router-proxy" \
      org.opencontainers.image.description="OpenAI-compatible LLM routing gateway" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed numeric uid so Kubernetes' runAsNonRoot can verify it without a passwd lookup.
RUN groupadd --system --gid 10001 router \
    && useradd --system --uid 10001 --gid router --home-dir /home/router --create-home \
       --shell /usr/sbin/nologin router
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY configs ./configs
# ROUTER_HOST: policies read `server.host: ${ROUTER_HOST:-...}`; in a container the
# gateway must listen on every interface. The *_OFFLINE variables make sure no library
# ever tries a hub download (nothing here needs one). Caches go to /tmp, so the image
# runs with a read-only root filesystem and an emptyDir (or tmpfs) on /tmp.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ROUTER_HOST=0.0.0.0 \
    ROUTER_PORT=8080 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    XDG_CACHE_HOME=/tmp/cache \
    ROUTER_PROXY_CACHE=/tmp/cache/router-proxy
USER 10001:10001
EXPOSE 8080
# No curl in slim images: python is already there.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('ROUTER_PORT', '8080'), timeout=4)"]
ENTRYPOINT ["router-proxy"]
CMD ["serve", "--config", "/app/configs/default.yaml"]
