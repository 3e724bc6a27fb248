"""Run config whose defaults come from ``Settings``: what the launchpad shows, and what a run uses unless its own
run config says otherwise. The layers declare their config classes with fixed defaults; the definitions derive
the classes they use from the settings file with ``with_defaults``."""

from __future__ import annotations

from typing import Any, TypeVar

import dagster as dg
import pydantic

C = TypeVar("C", bound=dg.Config)


def with_defaults(config_class: type[C], **defaults: Any) -> type[C]:
    """A subclass of ``config_class`` (same name, same fields) whose fields named here default to these values."""
    fields = {name: (config_class.model_fields[name].annotation, value) for name, value in defaults.items()}
    return pydantic.create_model(config_class.__name__, __base__=config_class, __module__=config_class.__module__,
                                 **fields)
