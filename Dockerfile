FROM python:3.11-slim
ENV UV_PYTHON_DOWNLOADS=never PYTHONUNBUFFERED=1 PATH="/app/.venv/bin:$PATH"
WORKDIR /app
RUN pip install --no-cache-dir uv==0.13.9
COPY pyproject.toml uv.lock README.md ./
COPY events events
COPY handlers handlers
COPY workers workers
COPY store store
COPY ingress ingress
COPY providers providers
COPY migrations migrations
RUN uv sync --frozen --no-dev
USER nobody
CMD ["studiovault", "--help"]
