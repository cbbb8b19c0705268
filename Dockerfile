# Worker / init / dashboard image for the search service.
#   CPU (default):  docker build -t rnn-search .
#   GPU:            docker build --build-arg VARIANT=gpu -t rnn-search:gpu .
# One worker per GPU: give each container its own device (CUDA_VISIBLE_DEVICES / device_ids).
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim AS base
ARG VARIANT=cpu
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=3 MLFLOW_DISABLE_TELEMETRY=true \
    MLFLOW_LOGGING_LEVEL=ERROR MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false GIT_PYTHON_REFRESH=quiet
WORKDIR /app

# Dependencies first (cached layer); code changes do not reinstall them.
COPY requirements.lock ./
RUN pip install uv==0.13.9 \
 && if [ "$VARIANT" = "gpu" ]; then \
      grep -v '^tensorflow-cpu==' requirements.lock > /tmp/req.txt \
      && echo 'tensorflow[and-cuda]==2.21.0' >> /tmp/req.txt; \
    else cp requirements.lock /tmp/req.txt; fi \
 && uv pip install --system --no-cache -r /tmp/req.txt \
 && rm /tmp/req.txt

# Named volumes mount on these paths: they must exist and belong to `search` in the image,
# or Docker creates them root-owned and the non-root processes cannot write (MLflow artifacts).
RUN useradd --create-home --uid 10001 search \
 && mkdir -p /app/.cache /app/studies /app/mlruns /mlartifacts \
 && chown -R search:search /app /mlartifacts
COPY --chown=search:search data_pipeline ./data_pipeline
COPY --chown=search:search models ./models
COPY --chown=search:search search ./search
COPY --chown=search:search studies/*.yaml ./studies/
COPY --chown=search:search data/demo ./data/demo
USER search
ENTRYPOINT ["python", "-m", "search"]
CMD ["--help"]
