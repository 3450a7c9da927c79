# One image for every candlecast process: Airflow (all components), the MLflow server and the
# BentoML prediction service. Build: docker compose build (README: Production).
FROM python:3.11-slim-bookworm

# libgomp1: LightGBM's OpenMP runtime, absent from the slim image (TA-Lib's wheel bundles its
# own C library).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    AIRFLOW_HOME=/opt/airflow \
    CANDLECAST_HOME=/var/lib/candlecast \
    CANDLECAST_PAIRS=/opt/candlecast/config/pairs.yaml \
    BENTOML_DO_NOT_TRACK=True

WORKDIR /opt/candlecast

# Dependencies first, so a code change does not redo the (large) install layer. The lock pins
# torch==2.13.0+cpu, which only the PyTorch CPU index serves.
COPY requirements.lock ./
RUN pip install --no-cache-dir -r requirements.lock \
        --extra-index-url https://download.pytorch.org/whl/cpu

COPY pyproject.toml README.md ./
COPY include/ include/
COPY dags/ dags/
COPY plugins/ plugins/
COPY feature_repo/ feature_repo/
COPY serving/ serving/
COPY config/ config/
COPY data/ data/
# Editable, like development: settings.REPO_ROOT resolves to /opt/candlecast, where the DAGs,
# config, serving/ and feature_repo/ are.
RUN pip install --no-cache-dir --no-deps -e .

# The state directories exist in the image, owned by the runtime user, so that named volumes
# mounted on them start out writable by it (Docker copies ownership into an empty volume).
# /opt/airflow/auth: the Airflow login file; /mlflow/auth: MLflow's user store.
RUN useradd --create-home --uid 50000 candlecast \
    && mkdir -p /var/lib/candlecast /opt/airflow/logs /opt/airflow/auth /mlflow/artifacts \
        /mlflow/auth \
    && chown -R candlecast:candlecast /var/lib/candlecast /opt/airflow /mlflow
USER candlecast

EXPOSE 3000 5000 8080
CMD ["candlecast", "--help"]
