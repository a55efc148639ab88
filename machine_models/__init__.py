"""Machine models as data: what a treatment machine can do, loaded from schema-versioned TOML files.

``load_model("truebeam-hd120")`` loads a bundled model; ``load_model("my.toml")`` a file of your own
(format: ``docs/machine-models.md``). This package never imports SimPy, pydicom, pynetdicom or Textual.
"""

from machine_models.errors import ModelError
from machine_models.loader import (
    available_models,
    bundled_model_path,
    describe_model,
    dump_model,
    load_model,
    loads_model,
)
from machine_models.schema import (
    SCHEMA_VERSION,
    AfterloaderModel,
    AxisLimits,
    DeviceKind,
    DoseRateServo,
    Energy,
    InstalledSource,
    JawModel,
    LinacModel,
    MachineModel,
    MlcModel,
    Wedge,
)

__all__ = [
    "SCHEMA_VERSION",
    "AfterloaderModel",
    "AxisLimits",
    "DeviceKind",
    "DoseRateServo",
    "Energy",
    "InstalledSource",
    "JawModel",
    "LinacModel",
    "MachineModel",
    "MlcModel",
    "ModelError",
    "Wedge",
    "available_models",
    "bundled_model_path",
    "describe_model",
    "dump_model",
    "load_model",
    "loads_model",
]
