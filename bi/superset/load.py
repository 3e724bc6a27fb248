"""Import the dashboards bundle into Superset, replacing what an earlier import left (run in the BI environment).

`superset import-dashboards` never overwrites charts or datasets that already exist, so a changed chart would keep
its old definition. This runs Superset's own importers for datasets, charts and dashboards, each with overwrite.

    SUPERSET_CONFIG_PATH=bi/superset/superset_config.py bi/.venv/bin/python bi/superset/load.py BUNDLE.zip admin
"""

from __future__ import annotations

import sys
from zipfile import ZipFile


def main(bundle: str, username: str) -> None:
    from flask import g
    from superset.app import create_app

    app = create_app()
    with app.app_context():
        from superset import security_manager
        from superset.commands.chart.importers.dispatcher import ImportChartsCommand
        from superset.commands.dashboard.importers.dispatcher import ImportDashboardsCommand
        from superset.commands.dataset.importers.dispatcher import ImportDatasetsCommand
        from superset.commands.importers.v1.utils import get_contents_from_bundle

        g.user = security_manager.find_user(username=username)
        with ZipFile(bundle) as archive:
            contents = get_contents_from_bundle(archive)
        for command in (ImportDatasetsCommand, ImportChartsCommand, ImportDashboardsCommand):
            command(contents, overwrite=True).run()


if __name__ == "__main__":
    main(*sys.argv[1:3])
