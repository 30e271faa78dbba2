"""Experiment configuration: one typed schema (:mod:`vlsm.config.schema`, pydantic) for every option, loaded
from YAML, overridden from ``--set`` and the command line, and written back resolved into every run folder
(``config.yaml``).

Each option is one schema field carrying its type, default, choices, bounds, help, flag, whether ``--resume``
may change it and its model-card text; the flags (:mod:`vlsm.config.flags`), the one-line errors, the resume
check and ``docs/reference/configuration.md`` (:mod:`vlsm.config.reference`) are derived from it. The model
section is a :class:`vlsm.models.ModelSpec`: exactly what ``vlsm.create_model`` takes.
"""
from vlsm.config.files import (
    apply_overrides,
    check_option,
    config_changes,
    config_from_dict,
    load_config,
    parse_override,
    read_yaml,
    resumable_keys,
    save_config,
    validate_config,
)
from vlsm.config.options import COMMAND_LINE, Card, Option
from vlsm.config.paths import expand_path
from vlsm.config.schema import (
    DEFAULT_MODEL,
    SECTIONS,
    DataConfig,
    EvalConfig,
    ExperimentConfig,
    ModelSection,
    TrainConfig,
    all_options,
    get_option,
)

#: the options a resumed run may change (:func:`resumable_keys`; kept for older imports)
RESUMABLE_KEYS = resumable_keys()


def default_model():
    """The model section of an experiment that names none."""
    return ExperimentConfig().model


__all__ = ["COMMAND_LINE", "Card", "DEFAULT_MODEL", "DataConfig", "EvalConfig", "ExperimentConfig", "ModelSection",
           "Option", "RESUMABLE_KEYS", "SECTIONS", "TrainConfig", "all_options", "apply_overrides", "check_option",
           "config_changes", "config_from_dict", "default_model", "expand_path", "get_option", "load_config",
           "parse_override", "read_yaml", "resumable_keys", "save_config", "validate_config"]
