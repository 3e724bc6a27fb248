"""What dbt gives the models' Jinja and sqlfluff's jinja templater does not, for linting only (see .sqlfluff).

sqlfluff renders the models without dbt (the dbt templater needs a warehouse connection, and what it renders
depends on the warehouse's state), so ``dbt.<macro>()`` here renders what dbt-duckdb renders: the SQL that runs.
"""
