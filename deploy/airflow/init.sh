#!/bin/sh
# airflow-init (docker-compose.yml): migrate the metadata database, then write the simple auth
# manager's password file from the passwords declared in .env (AIRFLOW_<USER>_PASSWORD for each
# user of AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS), so the logins are the ones .env names and
# a changed password takes effect at the next `docker compose up -d`. Secrets stay in the
# environment: nothing here puts one on a command line.
set -eu
airflow db migrate
python - <<'PY'
import json
import os
import sys
from pathlib import Path

path = Path(os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
users = [entry.split(":")[0] for entry in os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(",")]
passwords = {}
for user in users:
    password = os.environ.get(f"AIRFLOW_{user.upper()}_PASSWORD", "")
    if not password:
        sys.exit(f"airflow-init: AIRFLOW_{user.upper()}_PASSWORD is not set (see .env.example)")
    passwords[user] = password
path.parent.mkdir(parents=True, exist_ok=True)
partial = path.with_name(path.name + ".partial")
partial.write_text(json.dumps(passwords) + "\n")
partial.chmod(0o600)
partial.replace(path)
print(f"airflow-init: logins for {', '.join(users)} written to {path}")
PY
