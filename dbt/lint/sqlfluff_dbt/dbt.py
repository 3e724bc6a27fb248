"""dbt's cross-database macros as dbt-duckdb renders them (``dbt.concat``, ``dbt.type_string()``, ...)."""


def concat(fields):
    return " || ".join(fields)


def type_string():
    return "TEXT"


def type_timestamp():
    return "timestamp"


def type_float():
    return "float"


def dateadd(datepart, interval, from_date_or_timestamp):
    return f"({from_date_or_timestamp} + cast({interval} as bigint) * interval 1 {datepart})"


def datediff(first_date, second_date, datepart):
    return f"date_diff('{datepart}', {first_date}::timestamp, {second_date}::timestamp)"


def length(expression):
    return f"length({expression})"


def position(substring_text, string_text):
    return f"position({substring_text} in {string_text})"
