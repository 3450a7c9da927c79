-- Runs once, on an empty data directory, as POSTGRES_USER (airflow) in the airflow database:
-- the MLflow tracking server keeps its runs and model registry in a database of its own.
CREATE DATABASE mlflow OWNER airflow;
