"""The platform every layer stands on: the DuckDB warehouse (connection, tables, SQL quoting), the bucket reader
of dbt-built inputs on either engine, the Spark session, and the warehouse resource. It imports no layer."""
