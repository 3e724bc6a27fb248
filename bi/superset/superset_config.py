"""Superset's settings for the dagster-twins dashboards: local, offline, one metadata file under bi/.superset/.

Read by Superset through SUPERSET_CONFIG_PATH (bi/run.py sets it). Nothing here is read by the pipeline.
"""

import os
from pathlib import Path

HOME = Path(os.environ.get("TWINS_BI_HOME", Path(__file__).resolve().parents[1] / ".superset"))
HOME.mkdir(parents=True, exist_ok=True)

# A local secret, made once per checkout (never committed): Superset signs sessions with it.
_secret = HOME / "secret_key"
if not _secret.exists():
    _secret.write_text(os.urandom(32).hex())
SECRET_KEY = _secret.read_text().strip()

SQLALCHEMY_DATABASE_URI = f"sqlite:///{HOME / 'superset.db'}"
DATA_DIR = str(HOME)

# Offline: no analytics pixel, no examples, no external map tiles or fonts.
SCARF_ANALYTICS = False
FEATURE_FLAGS = {"DASHBOARD_RBAC": False, "ENABLE_TEMPLATE_PROCESSING": False}
MAPBOX_API_KEY = ""

# One user on 127.0.0.1: keep the UI simple and the caches small.
CACHE_CONFIG = {"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": 60}
DATA_CACHE_CONFIG = {"CACHE_TYPE": "NullCache"}  # every chart reads the current serving copy
ROW_LIMIT = 100000
SQLLAB_CTAS_NO_LIMIT = True
WTF_CSRF_ENABLED = True
TALISMAN_ENABLED = False
