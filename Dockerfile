# Small, non-root image of nflow. Build: docker build -t nflow .
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY src ./src
RUN python -m venv /opt/nflow \
 && /opt/nflow/bin/pip install --no-cache-dir -c constraints.txt '.[otel,wasm]'

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 nflow
COPY --from=build /opt/nflow /opt/nflow
ENV PATH=/opt/nflow/bin:$PATH \
    NFLOW_SERVER__HOST=0.0.0.0 \
    NFLOW_SERVER__PORT=8080 \
    NFLOW_LOGGING__FORMAT=json
USER nflow
WORKDIR /home/nflow
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/health').status != 200)"
CMD ["nflow", "serve"]
