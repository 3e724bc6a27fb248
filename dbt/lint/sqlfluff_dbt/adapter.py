"""dbt's ``adapter`` as far as the models use it: quoting an identifier (dispatch: dbt/lint/macros)."""


def quote(identifier):
    return f'"{identifier}"'
