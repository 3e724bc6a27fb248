"""The code location `dagster dev` loads (workspace.yaml): the definitions for the settings file and the
environment. Everything is assembled in ``location.py``."""

from dagster_twins.location import build_definitions
from dagster_twins.settings import Settings

defs = build_definitions(Settings.from_env())
