# The mesh image: the `mesh` command and its components. Used by docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY mesh ./mesh
COPY topics ./topics
COPY schemas ./schemas
COPY resources ./resources
COPY agents ./agents
RUN pip install --no-cache-dir . && useradd --create-home mesh
USER mesh
CMD ["mesh", "--help"]
