"""The `model` section: validated by the config class its `name` picks (the classes live in
`initsweep.catalog.models`, where registered and entry-point models join them)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ValidationError

from initsweep.catalog.models import model_config_class
from initsweep.config.errors import _one_line, shown


def _model_section(raw: Any) -> Any:
    """A `model` section validated by the config class its `name` picks, looked up when it is validated
    (built-ins, `import`, registered models, entry points); errors name the key inside the section."""
    if isinstance(raw, BaseModel):
        return raw
    if not isinstance(raw, dict):
        raise ValueError(f"input should be a mapping with a model name (got {shown(raw)})")
    config_class, raw = model_config_class(raw.get("name", "mlp"), raw)
    try:
        return config_class.model_validate(raw)
    except ValidationError as err:
        problem = _one_line(err)
        if problem.startswith("config: "):  # the whole section's problem, not one key's
            problem = problem.removeprefix("config: ")
        raise ValueError(problem) from None


ModelConfig = Annotated[Any, BeforeValidator(_model_section)]
"""A model section: `MLPConfig`, `CNNConfig`, `UserModelConfig` or a registered config class."""
