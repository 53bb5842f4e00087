# The pipeline image: one image for the worker, the ingress and the CLI (`studiovault ...`).
FROM python:3.11-slim
ENV UV_PYTHON_DOWNLOADS=never UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy PYTHONUNBUFFERED=1 \
    PATH="/app/.venv/bin:$PATH"
WORKDIR /app
RUN pip install --no-cache-dir uv==0.13.9
# Dependencies first, in their own layer: a change to the source does not reinstall them.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project
# Then the source and the migrations, installed as the `studiovault` package.
COPY README.md ./
COPY core core
COPY config config
COPY events events
COPY store store
COPY jobqueue jobqueue
COPY providers providers
COPY gateways gateways
COPY handlers handlers
COPY producers producers
COPY readmodels readmodels
COPY observability observability
COPY workers workers
COPY ingress ingress
COPY bootstrap bootstrap
COPY cli cli
COPY migrations migrations
RUN uv sync --frozen --no-dev --no-editable
USER nobody
CMD ["studiovault", "--help"]
