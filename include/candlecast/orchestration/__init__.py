"""Orchestration: the pipeline stages as typed functions (:mod:`.stages`, no Airflow) and the
Airflow DAG factory (:mod:`.dags`, the only module of the package that imports Airflow).
The top of the stage layers: it may import every stage package below it."""
