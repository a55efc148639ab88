"""Load machine models from schema-versioned TOML files (format: ``docs/machine-models.md``).

``load_model("truebeam-hd120")`` loads a bundled model, ``load_model("my.toml")`` a user file. Every
problem is a :class:`ModelError` naming the file and the key (``my.toml: mlc.leaf_boundaries_mm: ...``).
``dump_model`` writes a model back as TOML (without the source comments) so a loaded model round-trips.
"""

from __future__ import annotations

import difflib
import itertools
import json
import math
import re
import tomllib
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time
from importlib import resources
from pathlib import Path
from typing import Any

from machine_models.errors import ModelError
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
    "available_models",
    "bundled_model_path",
    "describe_model",
    "dump_model",
    "load_model",
    "loads_model",
]

_DATA_PACKAGE = "machine_models"
_DATA_DIR = "data"
_MODEL_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_MAX_SH_LENGTH = 16  # DICOM SH (Treatment Machine Name, Wedge ID, Fluence Mode ID)

_ROTATION_AXES = ("gantry", "collimator", "couch_rotation")
_TRANSLATION_AXES = ("couch_vertical", "couch_longitudinal", "couch_lateral")
_JAW_DEVICE_TYPES = ("X", "Y", "ASYMX", "ASYMY")
_MLC_DEVICE_TYPES = ("MLCX", "MLCY")
_RADIATION_TYPES = ("PHOTON", "ELECTRON")
_WEDGE_TYPES = ("STANDARD", "MOTORIZED", "DYNAMIC", "PARTIAL_STANDARD", "PARTIAL_MOTORIZ")

_TOP_KEYS = {
    "schema_version",
    "kind",
    "model_id",
    "manufacturer",
    "model_name",
    "treatment_machine_name",
    "description",
}
_LINAC_TABLES = {"delivery", "noise", "axes", "jaws", "mlc", "energies", "accessories", "extra"}
_AFTERLOADER_TABLES = {"afterloader", "motion", "source", "noise", "extra"}
_SUPPORTED_KINDS = (DeviceKind.LINAC.value, DeviceKind.AFTERLOADER.value)
_BRACHY_TREATMENT_TYPES = ("HDR", "PDR", "MDR", "LDR")
_SOURCE_TYPES = ("POINT", "LINE", "CYLINDER", "SPHERE")


# ---------------------------------------------------------------------------------------------------------
# public API


def available_models() -> list[str]:
    """The ids of the bundled machine models, sorted."""
    data_dir = resources.files(_DATA_PACKAGE) / _DATA_DIR
    return sorted(
        entry.name.removesuffix(".toml")
        for entry in data_dir.iterdir()
        if entry.is_file() and entry.name.endswith(".toml")
    )


def bundled_model_path(model_id: str) -> Path:
    """The path of the bundled model file ``model_id``; ``ModelError`` listing the ids if there is none."""
    if model_id not in available_models():
        raise ModelError(
            model_id,
            "model_id",
            f"no bundled machine model {model_id!r}; available: {', '.join(available_models())} "
            "(or give the path of a .toml file)",
        )
    return Path(str(resources.files(_DATA_PACKAGE) / _DATA_DIR / f"{model_id}.toml"))


def load_model(name_or_path: str | Path) -> MachineModel:
    """Load a bundled model by id (``"truebeam-hd120"``) or a model file by path (``"my.toml"``)."""
    if isinstance(name_or_path, Path) or _looks_like_path(name_or_path):
        path = Path(name_or_path)
        if not path.is_file():
            raise ModelError(str(path), "file", "no such machine model file")
        return _load_file(path, source=str(path), expected_id=None)
    path = bundled_model_path(name_or_path)
    return _load_file(path, source=f"machine_models/data/{path.name}", expected_id=name_or_path)


def loads_model(text: str, source: str = "<string>", source_file: Path | None = None) -> MachineModel:
    """Parse a model from TOML text; ``source`` is the name errors quote."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise _syntax_error(source, text, error) from None
    return _build_model(data, source, source_file)


def describe_model(model: MachineModel) -> list[str]:
    """The short lines ``rtsim machines`` prints for one model."""
    lines = [
        f"{model.model_id}: {model.manufacturer} {model.model_name} ({model.kind.value}), "
        f"treatment machine name {model.treatment_machine_name!r}"
    ]
    if model.afterloader is not None:
        return lines + _describe_afterloader(model.afterloader)
    linac = model.linac
    if linac is None:
        return lines
    if linac.mlc is None:
        lines.append("  MLC: none")
    else:
        mlc = linac.mlc
        widths = _describe_widths(mlc.leaf_boundaries_mm)
        lines.append(
            f"  MLC: {mlc.device_type} {mlc.leaf_pair_count} pairs ({widths}), "
            f"max leaf speed {_fmt(mlc.max_leaf_speed_mm_per_s)} mm/s"
        )
    lines.append(
        f"  gantry: max {_fmt(linac.gantry.max_speed_per_s)} deg/s; "
        f"dose-rate servo: {linac.dose_rate_servo.value}"
    )
    energies = ", ".join(f"{e.label} {_fmt(e.max_dose_rate_mu_per_min)}" for e in linac.energies)
    lines.append(f"  energies (max MU/min): {energies}")
    return lines


def dump_model(model: MachineModel) -> str:
    """The model as TOML text in the bundled-file layout (no source comments); ``loads_model`` reads it."""
    out: list[str] = [
        f"schema_version = {model.schema_version}",
        f"kind = {_toml_str(model.kind.value)}",
        f"model_id = {_toml_str(model.model_id)}",
        f"manufacturer = {_toml_str(model.manufacturer)}",
        f"model_name = {_toml_str(model.model_name)}",
        f"treatment_machine_name = {_toml_str(model.treatment_machine_name)}",
        f"description = {_toml_str(model.description)}",
    ]
    linac = model.linac
    if linac is not None:
        out += ["", "[delivery]", f"dose_rate_servo = {_toml_str(linac.dose_rate_servo.value)}"]
        out += _numbers(linac, "meterset_resolution_mu", "beam_on_startup_s")
        out += ["", "[noise]", f"angle_sd_deg = {_toml_num(linac.angle_noise_sd_deg)}"]
        out += [f"jaw_sd_mm = {_toml_num(linac.jaw_noise_sd_mm)}"]
        out += [f"couch_sd_mm = {_toml_num(linac.couch_noise_sd_mm)}"]
        for axis_name in (*_ROTATION_AXES, *_TRANSLATION_AXES):
            out += ["", f"[axes.{axis_name}]", *_dump_axis(getattr(linac, axis_name))]
        jaw_names: list[str] = []
        for jaw in linac.jaws:
            name = jaw.device_types[0].removeprefix("ASYM").lower()
            name = name if name not in jaw_names else f"{name}{len(jaw_names)}"
            jaw_names.append(name)
            out += ["", f"[jaws.{name}]"]
            out += [f"device_types = [{', '.join(_toml_str(t) for t in jaw.device_types)}]"]
            out += _numbers(
                jaw,
                "min_position_mm",
                "max_position_mm",
                "max_overtravel_mm",
                "max_speed_mm_per_s",
                "max_accel_mm_per_s2",
            )
        if linac.mlc is not None:
            out += ["", "[mlc]", *_dump_mlc(linac.mlc)]
        for energy in linac.energies:
            out += ["", "[[energies]]", *_dump_energy(energy)]
        out += ["", "[accessories]"]
        out += [f"electron_applicator_ids = [{', '.join(_toml_str(a) for a in linac.electron_applicators)}]"]
        out += ["wedges = ["]
        out += [
            f"  {{ wedge_id = {_toml_str(w.wedge_id)}, wedge_type = {_toml_str(w.wedge_type)}, "
            f"angle_deg = {_toml_num(w.angle_deg)} }},"
            for w in linac.wedges
        ]
        out += ["]"]
    if model.afterloader is not None:
        out += _dump_afterloader(model.afterloader)
    if model.extra:
        out += _dump_table("extra", model.extra)
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------------------
# reading


def _looks_like_path(name: str) -> bool:
    return name.endswith(".toml") or "/" in name or "\\" in name or Path(name).is_file()


def _load_file(path: Path, source: str, expected_id: str | None) -> MachineModel:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ModelError(source, "file", f"cannot read: {error}") from None
    model = loads_model(text, source=source, source_file=path)
    if expected_id is not None and model.model_id != expected_id:
        raise ModelError(
            source, "model_id", f"is {model.model_id!r} but the file is named {expected_id!r}.toml"
        )
    return model


def _syntax_error(source: str, text: str, error: tomllib.TOMLDecodeError) -> ModelError:
    message = str(error)
    match = re.search(r"\(at line (\d+), column (\d+)\)", message)
    if not match:
        reason = message.replace("(at end of document)", "").strip()
        where = "end of file" if "end of document" in message else "file"
        return ModelError(source, where, f"invalid TOML: {reason}")
    line_number = int(match.group(1))
    reason = message[: match.start()].strip()
    lines = text.splitlines()
    quoted = lines[line_number - 1].strip() if 0 < line_number <= len(lines) else ""
    return ModelError(source, f"line {line_number}", f"invalid TOML: {reason}: {quoted!r}")


class _Table:
    """One TOML table being read. Unknown keys are rejected as soon as the table is opened."""

    def __init__(self, data: Any, path: str, source: str, allowed: Iterable[str]) -> None:
        self.source = source
        self.path = path
        self.allowed = frozenset(allowed)
        if not isinstance(data, dict):
            raise ModelError(source, path, f"expected a table, got {_type_name(data)} {data!r}")
        self.data: dict[str, Any] = data
        for key in data:
            if key not in self.allowed:
                hint = difflib.get_close_matches(key, sorted(self.allowed), n=1)
                did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
                known = ", ".join(sorted(self.allowed))
                raise ModelError(source, self._key(key), f"unknown key{did_you_mean}; allowed here: {known}")

    def _key(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, problem: str) -> ModelError:
        return ModelError(self.source, self._key(key), problem)

    def has(self, key: str) -> bool:
        assert key in self.allowed, key
        return key in self.data

    def _raw(self, key: str, required: bool) -> Any:
        assert key in self.allowed, key
        if key not in self.data:
            if required:
                raise self.error(key, "missing required key")
            return None
        return self.data[key]

    def number(
        self,
        key: str,
        *,
        required: bool = True,
        default: float | None = None,
        positive: bool = False,
        nonnegative: bool = False,
    ) -> float | None:
        value = self._raw(key, required)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"expected a number, got {_type_name(value)} {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise self.error(key, f"must be a finite number, got {value!r}")
        if positive and value <= 0:
            raise self.error(key, f"must be > 0, got {_fmt(value)}")
        if nonnegative and value < 0:
            raise self.error(key, f"must be >= 0, got {_fmt(value)}")
        return value

    def req_number(self, key: str, *, positive: bool = False, nonnegative: bool = False) -> float:
        value = self.number(key, positive=positive, nonnegative=nonnegative)
        assert value is not None
        return value

    def integer(self, key: str, *, required: bool = True, minimum: int | None = None) -> int | None:
        value = self._raw(key, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an integer, got {_type_name(value)} {value!r}")
        if minimum is not None and value < minimum:
            raise self.error(key, f"must be >= {minimum}, got {value}")
        return value

    def string(
        self,
        key: str,
        *,
        required: bool = True,
        choices: Sequence[str] | None = None,
        max_length: int | None = None,
    ) -> str | None:
        value = self._raw(key, required)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {_type_name(value)} {value!r}")
        if not value.strip():
            raise self.error(key, "must not be empty")
        if choices is not None and value not in choices:
            raise self.error(key, f"expected one of {', '.join(choices)}, got {value!r}")
        if max_length is not None and len(value) > max_length:
            vr = "SH" if max_length == _MAX_SH_LENGTH else "LO"
            raise self.error(
                key, f"at most {max_length} characters (DICOM {vr}), got {len(value)}: {value!r}"
            )
        return value

    def req_string(self, key: str, **kwargs: Any) -> str:
        value = self.string(key, **kwargs)
        assert value is not None
        return value

    def boolean(self, key: str, *, default: bool) -> bool:
        value = self._raw(key, required=False)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {_type_name(value)} {value!r}")
        return value

    def list_of(self, key: str, kind: str, *, required: bool = True) -> list[Any] | None:
        """A list whose items are all ``kind`` ("number", "string" or "table")."""
        value = self._raw(key, required)
        if value is None:
            return None
        if not isinstance(value, list):
            raise self.error(key, f"expected a list, got {_type_name(value)} {value!r}")
        for index, item in enumerate(value):
            ok = {
                "number": isinstance(item, int | float) and not isinstance(item, bool),
                "string": isinstance(item, str),
                "table": isinstance(item, dict),
            }[kind]
            if not ok:
                raise ModelError(
                    self.source,
                    f"{self._key(key)}[{index}]",
                    f"expected a {kind}, got {_type_name(item)} {item!r}",
                )
        if kind == "number":
            return [float(item) for item in value]
        return list(value)

    def choices_of(self, key: str, choices: Iterable[str]) -> list[str]:
        """A required, non-empty list of strings, each one of ``choices``."""
        allowed = tuple(choices)
        options = ", ".join(allowed)
        values = self.list_of(key, "string")
        assert values is not None
        if not values:
            raise self.error(key, f"give at least one of {options}")
        for value in values:
            if value not in allowed:
                raise self.error(key, f"expected items from {options}, got {value!r}")
        return values

    def table(self, key: str, allowed: Iterable[str], *, required: bool = True) -> _Table | None:
        value = self._raw(key, required)
        if value is None:
            return None
        return _Table(value, self._key(key), self.source, allowed)


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "table"
    return type(value).__name__


def _build_model(data: dict[str, Any], source: str, source_file: Path | None) -> MachineModel:
    top_allowed = _TOP_KEYS | _LINAC_TABLES
    # schema_version and kind first: a file of another version or kind gets that message, not a key error
    version = data.get("schema_version")
    if version is None:
        raise ModelError(
            source, "schema_version", f"missing required key (this rtsim reads {SCHEMA_VERSION})"
        )
    if isinstance(version, bool) or not isinstance(version, int):
        raise ModelError(
            source, "schema_version", f"expected an integer, got {_type_name(version)} {version!r}"
        )
    if version != SCHEMA_VERSION:
        raise ModelError(
            source,
            "schema_version",
            f"unsupported schema_version {version}; this rtsim reads {SCHEMA_VERSION}",
        )
    kind = data.get("kind")
    supported = ", ".join(repr(k) for k in _SUPPORTED_KINDS)
    if kind is None:
        raise ModelError(source, "kind", f"missing required key (expected one of {supported})")
    if kind not in _SUPPORTED_KINDS:
        known = [k.value for k in DeviceKind]
        if kind in known:
            problem = f"kind {kind!r} is not supported by this loader yet; supported: {supported}"
        else:
            problem = f"unknown kind {kind!r}; expected one of {supported} (known kinds: {', '.join(known)})"
        raise ModelError(source, "kind", problem)
    if kind == DeviceKind.AFTERLOADER.value:
        top_allowed = _TOP_KEYS | _AFTERLOADER_TABLES

    top = _Table(data, "", source, top_allowed)
    model_id = top.req_string("model_id")
    if not _MODEL_ID_PATTERN.match(model_id):
        raise top.error(
            "model_id", f"use letters, digits, '.', '_' and '-' only (no spaces), got {model_id!r}"
        )
    common = {
        "schema_version": version,
        "model_id": model_id,
        "manufacturer": top.req_string("manufacturer"),
        "model_name": top.req_string("model_name"),
        "treatment_machine_name": top.req_string("treatment_machine_name", max_length=_MAX_SH_LENGTH),
        "description": top.req_string("description"),
        "source_file": source_file,
    }
    if kind == DeviceKind.AFTERLOADER.value:
        afterloader = _read_afterloader(top)
        return MachineModel(
            kind=DeviceKind.AFTERLOADER, afterloader=afterloader, extra=_read_extra(top), **common
        )
    return MachineModel(kind=DeviceKind.LINAC, linac=_read_linac(top), extra=_read_extra(top), **common)


def _read_linac(top: _Table) -> LinacModel:
    delivery = top.table("delivery", {"dose_rate_servo", "meterset_resolution_mu", "beam_on_startup_s"})
    assert delivery is not None
    servo = DoseRateServo(delivery.req_string("dose_rate_servo", choices=[s.value for s in DoseRateServo]))
    noise = top.table("noise", {"angle_sd_deg", "jaw_sd_mm", "couch_sd_mm"}, required=False)
    axes = top.table("axes", (*_ROTATION_AXES, *_TRANSLATION_AXES))
    assert axes is not None
    axis_limits = {name: _read_axis(axes, name, rotation=True) for name in _ROTATION_AXES}
    axis_limits |= {name: _read_axis(axes, name, rotation=False) for name in _TRANSLATION_AXES}
    energies = _read_energies(top, servo)
    applicators, wedges = _read_accessories(top)
    if applicators and not any(e.radiation_type == "ELECTRON" for e in energies):
        raise top.error(
            "accessories.electron_applicator_ids", "electron applicators given but no ELECTRON energy"
        )

    def noise_sd(key: str) -> float:
        if noise is None:
            return 0.0
        value = noise.number(key, required=False, default=0.0, nonnegative=True)
        assert value is not None
        return value

    resolution = delivery.number("meterset_resolution_mu", required=False, default=0.01, positive=True)
    startup = delivery.number("beam_on_startup_s", required=False, default=0.0, nonnegative=True)
    assert resolution is not None
    assert startup is not None
    return LinacModel(
        **axis_limits,
        jaws=_read_jaws(top),
        mlc=_read_mlc(top),
        energies=energies,
        dose_rate_servo=servo,
        wedges=wedges,
        electron_applicators=applicators,
        meterset_resolution_mu=resolution,
        beam_on_startup_s=startup,
        angle_noise_sd_deg=noise_sd("angle_sd_deg"),
        jaw_noise_sd_mm=noise_sd("jaw_sd_mm"),
        couch_noise_sd_mm=noise_sd("couch_sd_mm"),
    )


def _read_extra(top: _Table) -> dict[str, Any]:
    """The free-form ``[extra]`` table: kept as it is, not validated (site notes, tool settings)."""
    raw = top.data.get("extra")
    table = top.table("extra", raw.keys() if isinstance(raw, dict) else (), required=False)
    return dict(table.data) if table is not None else {}


def _read_axis(axes: _Table, name: str, *, rotation: bool) -> AxisLimits:
    unit = "deg" if rotation else "mm"
    keys = {
        f"min_position_{unit}",
        f"max_position_{unit}",
        f"max_speed_{unit}_per_s",
        f"max_accel_{unit}_per_s2",
    }
    if rotation:
        keys.add("circular")
    table = axes.table(name, keys)
    assert table is not None
    low = table.req_number(f"min_position_{unit}")
    high = table.req_number(f"max_position_{unit}")
    if low >= high:
        raise table.error(
            f"max_position_{unit}",
            f"must be greater than min_position_{unit} ({_fmt(low)}), got {_fmt(high)}",
        )
    if rotation and high - low > 360.0:
        raise table.error(f"max_position_{unit}", f"a rotation spans at most 360 deg, got {_fmt(high - low)}")
    return AxisLimits(
        name=name,
        unit=unit,
        min_position=low,
        max_position=high,
        max_speed_per_s=table.req_number(f"max_speed_{unit}_per_s", positive=True),
        max_accel_per_s2=table.number(f"max_accel_{unit}_per_s2", required=False, positive=True),
        circular=table.boolean("circular", default=False) if rotation else False,
    )


def _read_jaws(top: _Table) -> tuple[JawModel, ...]:
    jaws_data = top.data.get("jaws")
    names = list(jaws_data) if isinstance(jaws_data, dict) else []
    jaws_table = top.table("jaws", names)
    assert jaws_table is not None
    if not names:
        raise top.error("jaws", "give at least one jaw pair, e.g. [jaws.x] and [jaws.y]")
    keys = {
        "device_types",
        "min_position_mm",
        "max_position_mm",
        "max_overtravel_mm",
        "max_speed_mm_per_s",
        "max_accel_mm_per_s2",
    }
    jaws: list[JawModel] = []
    seen: dict[str, str] = {}
    for name in names:
        table = jaws_table.table(name, keys)
        assert table is not None
        device_types = table.choices_of("device_types", _JAW_DEVICE_TYPES)
        for device_type in device_types:
            if device_type in seen:
                raise table.error(
                    "device_types", f"{device_type!r} is already listed in jaws.{seen[device_type]}"
                )
            seen[device_type] = name
        low = table.req_number("min_position_mm")
        high = table.req_number("max_position_mm")
        if low >= high:
            raise table.error(
                "max_position_mm", f"must be greater than min_position_mm ({_fmt(low)}), got {_fmt(high)}"
            )
        overtravel = table.req_number("max_overtravel_mm", nonnegative=True)
        if overtravel > high or -overtravel < low:
            raise table.error(
                "max_overtravel_mm",
                f"{_fmt(overtravel)} mm lies outside the jaw range {_fmt(low)}..{_fmt(high)} mm",
            )
        jaws.append(
            JawModel(
                device_types=tuple(device_types),
                min_position_mm=low,
                max_position_mm=high,
                max_overtravel_mm=overtravel,
                max_speed_mm_per_s=table.req_number("max_speed_mm_per_s", positive=True),
                max_accel_mm_per_s2=table.number("max_accel_mm_per_s2", required=False, positive=True),
            )
        )
    return tuple(jaws)


def _read_mlc(top: _Table) -> MlcModel | None:
    keys = {
        "device_type",
        "leaf_pair_count",
        "leaf_boundaries_mm",
        "leaf_width_segments",
        "first_leaf_boundary_mm",
        "min_position_mm",
        "max_position_mm",
        "max_leaf_spread_mm",
        "min_leaf_gap_mm",
        "interdigitation",
        "max_leaf_speed_mm_per_s",
        "max_leaf_accel_mm_per_s2",
        "position_noise_sd_mm",
    }
    table = top.table("mlc", keys, required=False)
    if table is None:
        return None
    pair_count = table.integer("leaf_pair_count", minimum=1)
    assert pair_count is not None
    boundaries = _read_boundaries(table, pair_count)
    low = table.req_number("min_position_mm")
    high = table.req_number("max_position_mm")
    if low >= high:
        raise table.error(
            "max_position_mm", f"must be greater than min_position_mm ({_fmt(low)}), got {_fmt(high)}"
        )
    if "interdigitation" not in table.data:
        raise table.error("interdigitation", "missing required key (true or false)")
    noise = table.number("position_noise_sd_mm", required=False, default=0.0, nonnegative=True)
    assert noise is not None
    return MlcModel(
        device_type=table.req_string("device_type", choices=_MLC_DEVICE_TYPES),
        leaf_pair_count=pair_count,
        leaf_boundaries_mm=boundaries,
        min_position_mm=low,
        max_position_mm=high,
        max_leaf_spread_mm=table.req_number("max_leaf_spread_mm", positive=True),
        min_leaf_gap_mm=table.req_number("min_leaf_gap_mm", nonnegative=True),
        interdigitation=table.boolean("interdigitation", default=False),
        max_leaf_speed_mm_per_s=table.req_number("max_leaf_speed_mm_per_s", positive=True),
        max_leaf_accel_mm_per_s2=table.number("max_leaf_accel_mm_per_s2", required=False, positive=True),
        position_noise_sd_mm=noise,
    )


def _read_boundaries(table: _Table, pair_count: int) -> tuple[float, ...]:
    explicit = table.has("leaf_boundaries_mm")
    compact = table.has("leaf_width_segments")
    if explicit == compact:
        raise table.error(
            "leaf_boundaries_mm",
            "give exactly one of leaf_boundaries_mm (leaf_pair_count + 1 values) or leaf_width_segments",
        )
    if explicit:
        if table.has("first_leaf_boundary_mm"):
            raise table.error("first_leaf_boundary_mm", "only used with leaf_width_segments")
        values = table.list_of("leaf_boundaries_mm", "number")
        assert values is not None
        if len(values) != pair_count + 1:
            raise table.error(
                "leaf_boundaries_mm",
                f"expected {pair_count + 1} values (leaf_pair_count + 1), got {len(values)}",
            )
        key = "leaf_boundaries_mm"
    else:
        segments = table.list_of("leaf_width_segments", "table")
        assert segments is not None
        widths: list[float] = []
        for index, segment_data in enumerate(segments):
            segment_path = f"{table.path}.leaf_width_segments[{index}]"
            segment = _Table(segment_data, segment_path, table.source, {"count", "width_mm"})
            count = segment.integer("count", minimum=1)
            width = segment.req_number("width_mm", positive=True)
            assert count is not None
            widths += [width] * count
        if len(widths) != pair_count:
            raise table.error(
                "leaf_width_segments",
                f"the counts add up to {len(widths)}, expected leaf_pair_count = {pair_count}",
            )
        start = table.number("first_leaf_boundary_mm", required=False, default=-sum(widths) / 2.0)
        assert start is not None
        values = [start]
        for width in widths:
            values.append(values[-1] + width)
        key = "leaf_width_segments"
    for index in range(1, len(values)):
        if values[index] <= values[index - 1]:
            raise table.error(
                key,
                f"boundaries must increase: value {index} ({_fmt(values[index])}) <= "
                f"value {index - 1} ({_fmt(values[index - 1])})",
            )
    return tuple(values)


def _read_energies(top: _Table, servo: DoseRateServo) -> tuple[Energy, ...]:
    items = top.list_of("energies", "table")
    assert items is not None
    if not items:
        raise top.error("energies", "give at least one [[energies]] table")
    keys = {
        "label",
        "radiation_type",
        "nominal_energy_mev",
        "fluence_mode_id",
        "max_dose_rate_mu_per_min",
        "min_dose_rate_mu_per_min",
        "dose_rate_bins_mu_per_min",
        "dose_rate_bin_count",
    }
    energies: list[Energy] = []
    labels: set[str] = set()
    beams: dict[tuple[str, float, str | None], str] = {}
    for index, item in enumerate(items):
        table = _Table(item, f"energies[{index}]", top.source, keys)
        label = table.req_string("label", max_length=_MAX_SH_LENGTH)
        if label in labels:
            raise table.error("label", f"energy {label!r} is listed twice")
        labels.add(label)
        radiation = table.req_string("radiation_type", choices=_RADIATION_TYPES)
        nominal = table.req_number("nominal_energy_mev", positive=True)
        fluence = table.string("fluence_mode_id", required=False, max_length=_MAX_SH_LENGTH)
        beam_key = (radiation, nominal, fluence)
        if beam_key in beams:
            raise table.error(
                "nominal_energy_mev",
                f"{label!r} has the same radiation type, energy and fluence mode as {beams[beam_key]!r}",
            )
        beams[beam_key] = label
        max_rate = table.req_number("max_dose_rate_mu_per_min", positive=True)
        bins = _read_bins(table, servo, max_rate, label)
        default_min = min(bins) if bins else 5.0
        min_rate = table.number(
            "min_dose_rate_mu_per_min", required=False, default=default_min, positive=True
        )
        assert min_rate is not None
        if min_rate > max_rate:
            raise table.error(
                "min_dose_rate_mu_per_min",
                f"{_fmt(min_rate)} is above max_dose_rate_mu_per_min {_fmt(max_rate)} (energy {label!r})",
            )
        if bins and min(bins) < min_rate:
            raise table.error(
                "min_dose_rate_mu_per_min",
                f"{_fmt(min_rate)} is above the lowest dose-rate bin {_fmt(min(bins))} (energy {label!r})",
            )
        energies.append(
            Energy(
                label=label,
                radiation_type=radiation,
                nominal_energy_mev=nominal,
                fluence_mode_id=fluence,
                max_dose_rate_mu_per_min=max_rate,
                min_dose_rate_mu_per_min=min_rate,
                dose_rate_bins_mu_per_min=bins,
            )
        )
    return tuple(energies)


def _read_bins(table: _Table, servo: DoseRateServo, max_rate: float, label: str) -> tuple[float, ...] | None:
    explicit = table.has("dose_rate_bins_mu_per_min")
    halving = table.has("dose_rate_bin_count")
    if servo is DoseRateServo.CONTINUOUS:
        for key in ("dose_rate_bins_mu_per_min", "dose_rate_bin_count"):
            if table.has(key):
                raise table.error(
                    key, f"dose-rate bins need delivery.dose_rate_servo = 'binned' (energy {label!r})"
                )
        return None
    if explicit == halving:
        raise table.error(
            "dose_rate_bins_mu_per_min",
            f"a binned servo needs exactly one of dose_rate_bins_mu_per_min or dose_rate_bin_count "
            f"(energy {label!r})",
        )
    if halving:
        count = table.integer("dose_rate_bin_count", minimum=1)
        assert count is not None
        return tuple(max_rate / 2**k for k in range(count))
    values = table.list_of("dose_rate_bins_mu_per_min", "number")
    assert values is not None
    if not values:
        raise table.error("dose_rate_bins_mu_per_min", f"give at least one bin (energy {label!r})")
    for value in values:
        if not 0 < value <= max_rate:
            raise table.error(
                "dose_rate_bins_mu_per_min",
                f"bin {_fmt(value)} is outside 0..max_dose_rate_mu_per_min ({_fmt(max_rate)}) "
                f"(energy {label!r})",
            )
    if len(set(values)) != len(values):
        raise table.error("dose_rate_bins_mu_per_min", f"repeated bin (energy {label!r})")
    return tuple(sorted(values, reverse=True))


def _read_accessories(top: _Table) -> tuple[tuple[str, ...], tuple[Wedge, ...]]:
    table = top.table("accessories", {"electron_applicator_ids", "wedges"}, required=False)
    if table is None:
        return (), ()
    applicators = table.list_of("electron_applicator_ids", "string", required=False) or []
    for index, applicator in enumerate(applicators):
        if not applicator.strip() or applicators.index(applicator) != index:
            raise table.error("electron_applicator_ids", f"empty or repeated applicator id {applicator!r}")
    wedges: list[Wedge] = []
    for index, item in enumerate(table.list_of("wedges", "table", required=False) or []):
        wedge = _Table(
            item, f"{table.path}.wedges[{index}]", top.source, {"wedge_id", "wedge_type", "angle_deg"}
        )
        wedge_id = wedge.req_string("wedge_id", max_length=_MAX_SH_LENGTH)
        if any(w.wedge_id == wedge_id for w in wedges):
            raise wedge.error("wedge_id", f"wedge {wedge_id!r} is listed twice")
        angle = wedge.req_number("angle_deg", positive=True)
        if angle >= 90.0:
            raise wedge.error("angle_deg", f"a wedge angle is below 90 deg, got {_fmt(angle)}")
        wedges.append(Wedge(wedge_id, wedge.req_string("wedge_type", choices=_WEDGE_TYPES), angle))
    return tuple(applicators), tuple(wedges)


def _read_afterloader(top: _Table) -> AfterloaderModel:
    keys = {
        "treatment_types",
        "channel_count",
        "min_channel_length_mm",
        "max_channel_length_mm",
        "step_sizes_mm",
        "max_dwell_positions_per_channel",
        "dwell_time_resolution_s",
        "max_dwell_time_s",
        "source_strength_tolerance_percent",
    }
    table = top.table("afterloader", keys)
    assert table is not None
    types = table.choices_of("treatment_types", _BRACHY_TREATMENT_TYPES)
    if len(set(types)) != len(types):
        raise table.error("treatment_types", f"repeated treatment type in {types}")
    channels = table.integer("channel_count", minimum=1)
    positions = table.integer("max_dwell_positions_per_channel", minimum=1)
    assert channels is not None
    assert positions is not None
    longest = table.req_number("max_channel_length_mm", positive=True)
    shortest = table.number("min_channel_length_mm", required=False, default=0.0, nonnegative=True)
    assert shortest is not None
    if shortest >= longest:
        raise table.error(
            "min_channel_length_mm",
            f"must be below max_channel_length_mm ({_fmt(longest)}), got {_fmt(shortest)}",
        )
    steps = table.list_of("step_sizes_mm", "number")
    assert steps is not None
    if not steps:
        raise table.error("step_sizes_mm", "give at least one step size")
    for value in steps:
        if value <= 0:
            raise table.error("step_sizes_mm", f"step sizes must be > 0, got {_fmt(value)}")
    if len(set(steps)) != len(steps):
        raise table.error("step_sizes_mm", "repeated step size")
    resolution = table.req_number("dwell_time_resolution_s", positive=True)
    max_dwell = table.number("max_dwell_time_s", required=False, positive=True)
    if max_dwell is not None and max_dwell < resolution:
        raise table.error(
            "max_dwell_time_s", f"{_fmt(max_dwell)} s is below dwell_time_resolution_s {_fmt(resolution)} s"
        )
    tolerance = table.req_number("source_strength_tolerance_percent", positive=True)

    motion = top.table(
        "motion",
        {
            "source_speed_mm_per_s",
            "check_cable_speed_mm_per_s",
            "dwell_settle_s",
            "indexer_move_s",
            "safe_to_channel_mm",
            "emergency_retraction_s",
        },
    )
    assert motion is not None
    noise = top.table("noise", {"dwell_time_sd_s", "position_sd_mm"}, required=False)

    def noise_sd(key: str) -> float:
        if noise is None:
            return 0.0
        value = noise.number(key, required=False, default=0.0, nonnegative=True)
        assert value is not None
        return value

    return AfterloaderModel(
        treatment_types=tuple(types),
        channel_count=channels,
        max_channel_length_mm=longest,
        min_channel_length_mm=shortest,
        step_sizes_mm=tuple(sorted(steps)),
        max_dwell_positions_per_channel=positions,
        dwell_time_resolution_s=resolution,
        max_dwell_time_s=max_dwell,
        source_speed_mm_per_s=motion.req_number("source_speed_mm_per_s", positive=True),
        check_cable_speed_mm_per_s=motion.req_number("check_cable_speed_mm_per_s", positive=True),
        dwell_settle_s=motion.req_number("dwell_settle_s", nonnegative=True),
        indexer_move_s=motion.req_number("indexer_move_s", nonnegative=True),
        safe_to_channel_mm=motion.req_number("safe_to_channel_mm", nonnegative=True),
        source=_read_source(top),
        source_strength_tolerance_percent=tolerance,
        emergency_retraction_s=motion.req_number("emergency_retraction_s", nonnegative=True),
        dwell_time_noise_sd_s=noise_sd("dwell_time_sd_s"),
        position_noise_sd_mm=noise_sd("position_sd_mm"),
    )


def _read_source(top: _Table) -> InstalledSource:
    keys = {
        "isotope",
        "half_life_days",
        "reference_air_kerma_rate_ugy_per_h",
        "calibration_datetime",
        "serial_number",
        "manufacturer",
        "source_model_id",
        "source_type",
    }
    table = top.table("source", keys)
    assert table is not None
    raw = table._raw("calibration_datetime", required=True)
    if isinstance(raw, datetime):
        if raw.tzinfo is not None:
            raise table.error(
                "calibration_datetime", "give a local date-time without offset, e.g. 2025-01-06T09:00:00"
            )
        calibration = raw
    elif isinstance(raw, date):
        calibration = datetime.combine(raw, time())
    else:
        raise table.error(
            "calibration_datetime",
            f"expected a TOML local date-time such as 2025-01-06T09:00:00, got {_type_name(raw)} {raw!r}",
        )
    return InstalledSource(
        isotope=table.req_string("isotope", max_length=64),
        half_life_days=table.req_number("half_life_days", positive=True),
        reference_air_kerma_rate_ugy_per_h=table.req_number(
            "reference_air_kerma_rate_ugy_per_h", positive=True
        ),
        calibration_datetime=calibration,
        serial_number=table.req_string("serial_number", max_length=64),
        manufacturer=table.req_string("manufacturer", max_length=64),
        source_model_id=table.string("source_model_id", required=False, max_length=_MAX_SH_LENGTH) or "",
        source_type=table.string("source_type", required=False, choices=_SOURCE_TYPES) or "LINE",
    )


# ---------------------------------------------------------------------------------------------------------
# writing and formatting


def _fmt(value: float) -> str:
    return f"{value:g}"


def _toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _toml_num(value: float) -> str:
    return repr(float(value))


def _numbers(obj: object, *names: str) -> list[str]:
    """``name = number`` for each attribute of ``obj`` that is set (the TOML key is the field name)."""
    return [f"{name} = {_toml_num(getattr(obj, name))}" for name in names if getattr(obj, name) is not None]


def _dump_axis(axis: AxisLimits) -> list[str]:
    unit = axis.unit
    lines = [
        f"min_position_{unit} = {_toml_num(axis.min_position)}",
        f"max_position_{unit} = {_toml_num(axis.max_position)}",
        f"max_speed_{unit}_per_s = {_toml_num(axis.max_speed_per_s)}",
    ]
    if axis.max_accel_per_s2 is not None:
        lines.append(f"max_accel_{unit}_per_s2 = {_toml_num(axis.max_accel_per_s2)}")
    if unit == "deg":
        lines.append(f"circular = {'true' if axis.circular else 'false'}")
    return lines


def _dump_mlc(mlc: MlcModel) -> list[str]:
    lines = [
        f"device_type = {_toml_str(mlc.device_type)}",
        f"leaf_pair_count = {mlc.leaf_pair_count}",
        f"leaf_boundaries_mm = [{', '.join(_toml_num(b) for b in mlc.leaf_boundaries_mm)}]",
        *_numbers(mlc, "min_position_mm", "max_position_mm", "max_leaf_spread_mm", "min_leaf_gap_mm"),
        f"interdigitation = {'true' if mlc.interdigitation else 'false'}",
        *_numbers(mlc, "max_leaf_speed_mm_per_s", "max_leaf_accel_mm_per_s2", "position_noise_sd_mm"),
    ]
    return lines


def _dump_energy(energy: Energy) -> list[str]:
    lines = [
        f"label = {_toml_str(energy.label)}",
        f"radiation_type = {_toml_str(energy.radiation_type)}",
        f"nominal_energy_mev = {_toml_num(energy.nominal_energy_mev)}",
    ]
    if energy.fluence_mode_id is not None:
        lines.append(f"fluence_mode_id = {_toml_str(energy.fluence_mode_id)}")
    lines += _numbers(energy, "max_dose_rate_mu_per_min", "min_dose_rate_mu_per_min")
    if energy.dose_rate_bins_mu_per_min is not None:
        bins = ", ".join(_toml_num(b) for b in energy.dose_rate_bins_mu_per_min)
        lines.append(f"dose_rate_bins_mu_per_min = [{bins}]")
    return lines


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _toml_num(value)
    if isinstance(value, str):
        return _toml_str(value)
    if isinstance(value, list):
        return f"[{', '.join(_toml_value(item) for item in value)}]"
    if isinstance(value, dict):
        inner = ", ".join(f"{_toml_str(k)} = {_toml_value(v)}" for k, v in value.items())
        return f"{{ {inner} }}" if inner else "{}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _dump_table(name: str, table: dict[str, Any]) -> list[str]:
    lines = ["", f"[{name}]"]
    lines += [f"{_toml_str(key)} = {_toml_value(value)}" for key, value in table.items()]
    return lines


def _describe_widths(boundaries: Sequence[float]) -> str:
    """Run-length leaf widths: ``10x10 + 40x5 + 10x10 mm``."""
    runs: list[list[float]] = []
    for low, high in itertools.pairwise(boundaries):
        width = round(high - low, 6)
        if runs and runs[-1][1] == width:
            runs[-1][0] += 1
        else:
            runs.append([1, width])
    return " + ".join(f"{int(count)}x{_fmt(width)}" for count, width in runs) + " mm"


def _describe_afterloader(al: AfterloaderModel) -> list[str]:
    src = al.source
    steps = ", ".join(_fmt(step) for step in al.step_sizes_mm)
    return [
        f"  {'/'.join(al.treatment_types)}: {al.channel_count} channels, length "
        f"{_fmt(al.min_channel_length_mm)}..{_fmt(al.max_channel_length_mm)} mm, steps {steps} mm, "
        f"<= {al.max_dwell_positions_per_channel} dwell positions per channel",
        f"  timer resolution {_fmt(al.dwell_time_resolution_s)} s; "
        f"source {_fmt(al.source_speed_mm_per_s)} mm/s, "
        f"check cable {_fmt(al.check_cable_speed_mm_per_s)} mm/s, settle {_fmt(al.dwell_settle_s)} s",
        f"  source {src.isotope} (half-life {_fmt(src.half_life_days)} d) serial {src.serial_number}: "
        f"{_fmt(src.reference_air_kerma_rate_ugy_per_h)} uGy/h at 1 m "
        f"on {src.calibration_datetime.isoformat()}",
    ]


def _dump_afterloader(al: AfterloaderModel) -> list[str]:
    src = al.source
    out = ["", "[afterloader]"]
    out += [f"treatment_types = [{', '.join(_toml_str(t) for t in al.treatment_types)}]"]
    out += [f"channel_count = {al.channel_count}"]
    out += _numbers(al, "min_channel_length_mm", "max_channel_length_mm")
    out += [f"step_sizes_mm = [{', '.join(_toml_num(v) for v in al.step_sizes_mm)}]"]
    out += [f"max_dwell_positions_per_channel = {al.max_dwell_positions_per_channel}"]
    out += _numbers(al, "dwell_time_resolution_s", "max_dwell_time_s", "source_strength_tolerance_percent")
    out += ["", "[motion]"]
    out += _numbers(
        al,
        "source_speed_mm_per_s",
        "check_cable_speed_mm_per_s",
        "dwell_settle_s",
        "indexer_move_s",
        "safe_to_channel_mm",
        "emergency_retraction_s",
    )
    out += ["", "[source]"]
    out += [f"isotope = {_toml_str(src.isotope)}"]
    out += _numbers(src, "half_life_days", "reference_air_kerma_rate_ugy_per_h")
    out += [f"calibration_datetime = {src.calibration_datetime.isoformat()}"]
    out += [f"serial_number = {_toml_str(src.serial_number)}"]
    out += [f"manufacturer = {_toml_str(src.manufacturer)}"]
    if src.source_model_id:
        out += [f"source_model_id = {_toml_str(src.source_model_id)}"]
    out += [f"source_type = {_toml_str(src.source_type)}"]
    out += ["", "[noise]"]
    out += [f"dwell_time_sd_s = {_toml_num(al.dwell_time_noise_sd_s)}"]
    out += [f"position_sd_mm = {_toml_num(al.position_noise_sd_mm)}"]
    return out
