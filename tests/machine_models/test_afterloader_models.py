"""Afterloader machine models: the bundled HDR/PDR files, the ``kind = "afterloader"`` format, its errors."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import pytest

from machine_models import DeviceKind, ModelError, describe_model, dump_model, load_model, loads_model
from machine_models.loader import bundled_model_path

AFTERLOADERS = ("microselectron-v3", "flexitron", "microselectron-pdr")

MINIMAL = """\
schema_version = 1
kind = "afterloader"
model_id = "my-hdr"
manufacturer = "Acme"
model_name = "HDR 1"
treatment_machine_name = "ACMEHDR"
description = "test afterloader"

[afterloader]
treatment_types = ["HDR"]
channel_count = 18
max_channel_length_mm = 1500.0
step_sizes_mm = [2.5, 5.0, 10.0]
max_dwell_positions_per_channel = 48
dwell_time_resolution_s = 0.1
source_strength_tolerance_percent = 5.0

[motion]
source_speed_mm_per_s = 330.0
check_cable_speed_mm_per_s = 330.0
dwell_settle_s = 0.026
indexer_move_s = 2.0
safe_to_channel_mm = 300.0
emergency_retraction_s = 30.0

[source]
isotope = "Ir-192"
half_life_days = 73.83
reference_air_kerma_rate_ugy_per_h = 40800.0
calibration_datetime = 2025-01-06T09:00:00
serial_number = "S-1"
manufacturer = "Acme"
"""


def _write(tmp_path: Path, text: str, name: str = "my-hdr.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("model_id", AFTERLOADERS)
def test_bundled_afterloaders_load(model_id: str) -> None:
    model = load_model(model_id)
    assert model.kind is DeviceKind.AFTERLOADER
    assert model.linac is None
    al = model.afterloader
    assert al is not None
    assert al.source.isotope == "Ir-192"
    assert al.source.half_life_days == 73.83
    assert al.source.calibration_datetime == datetime(2025, 1, 6, 9, 0)
    assert al.dwell_time_resolution_s == 0.1
    assert 0 < len(model.treatment_machine_name) <= 16


def test_bundled_channel_counts_and_types() -> None:
    assert load_model("microselectron-v3").afterloader.channel_count == 18
    assert load_model("flexitron").afterloader.channel_count == 40
    assert load_model("flexitron").afterloader.max_dwell_positions_per_channel == 400
    pdr = load_model("microselectron-pdr").afterloader
    assert pdr.treatment_types == ("PDR",)
    assert pdr.step_sizes_mm == (2.5, 5.0, 10.0)


_TAG = re.compile(r"\b[HML]\b")
_NUMBER = re.compile(r"(?<![\w.])-?\d+(\.\d+)?")


@pytest.mark.parametrize("model_id", AFTERLOADERS)
def test_every_number_has_a_tagged_source_comment(model_id: str) -> None:
    untagged = []
    for number, line in enumerate(bundled_model_path(model_id).read_text().splitlines(), start=1):
        code, _, comment = line.partition("#")
        code = re.sub(r'"[^"]*"', '""', code)
        if code.strip().startswith("schema_version"):
            continue
        if _NUMBER.search(code) and not _TAG.search(comment):
            untagged.append(f"line {number}: {line.strip()}")
    assert untagged == []


@pytest.mark.parametrize("model_id", AFTERLOADERS)
def test_round_trip_through_dump(model_id: str) -> None:
    model = load_model(model_id)
    again = loads_model(dump_model(model), source="dumped.toml", source_file=model.source_file)
    assert again == model


def test_describe_names_channels_timer_and_source() -> None:
    text = "\n".join(describe_model(load_model("microselectron-v3")))
    assert "(afterloader)" in text
    assert "HDR: 18 channels" in text
    assert "steps 2.5, 5, 10 mm" in text
    assert "timer resolution 0.1 s" in text
    assert "Ir-192 (half-life 73.83 d) serial RTSIM-IR192-0001" in text


def test_minimal_file_gets_defaults(tmp_path: Path) -> None:
    model = load_model(_write(tmp_path, MINIMAL))
    al = model.afterloader
    assert al.min_channel_length_mm == 0.0
    assert al.max_dwell_time_s is None
    assert al.dwell_time_noise_sd_s == 0.0
    assert al.position_noise_sd_mm == 0.0
    assert al.source.source_type == "LINE"


def test_calibration_date_alone_means_midnight(tmp_path: Path) -> None:
    text = MINIMAL.replace("2025-01-06T09:00:00", "2025-01-06")
    assert load_model(_write(tmp_path, text)).afterloader.source.calibration_datetime == datetime(2025, 1, 6)


@pytest.mark.parametrize(
    ("old", "new", "key", "problem"),
    [
        ('treatment_types = ["HDR"]', 'treatment_types = ["XDR"]', "afterloader.treatment_types", "XDR"),
        ('treatment_types = ["HDR"]', "treatment_types = []", "afterloader.treatment_types", "at least one"),
        ("channel_count = 18", "channel_count = 0", "afterloader.channel_count", "must be >= 1"),
        ("channel_count = 18", "channel_count = 18.5", "afterloader.channel_count", "integer"),
        ("step_sizes_mm = [2.5, 5.0, 10.0]", "step_sizes_mm = [0.0]", "afterloader.step_sizes_mm", "> 0"),
        (
            "step_sizes_mm = [2.5, 5.0, 10.0]",
            "step_sizes_mm = [5.0, 5.0]",
            "afterloader.step_sizes_mm",
            "repeated",
        ),
        (
            "max_channel_length_mm = 1500.0",
            "max_channel_length_mm = 1500.0\nmin_channel_length_mm = 1600.0",
            "afterloader.min_channel_length_mm",
            "below max_channel_length_mm",
        ),
        (
            "dwell_time_resolution_s = 0.1",
            "dwell_time_resolution_s = 0",
            "afterloader.dwell_time_resolution_s",
            "> 0",
        ),
        (
            "source_speed_mm_per_s = 330.0",
            "source_sped_mm_per_s = 330.0",
            "motion.source_sped_mm_per_s",
            "did you mean",
        ),
        ("half_life_days = 73.83", "half_life_days = -1", "source.half_life_days", "> 0"),
        (
            "calibration_datetime = 2025-01-06T09:00:00",
            'calibration_datetime = "yesterday"',
            "source.calibration_datetime",
            "local date-time",
        ),
        (
            "calibration_datetime = 2025-01-06T09:00:00",
            "calibration_datetime = 2025-01-06T09:00:00Z",
            "source.calibration_datetime",
            "without offset",
        ),
        ('serial_number = "S-1"\n', "", "source.serial_number", "missing required key"),
        ("[motion]", "[motions]", "motions", "unknown key"),
    ],
)
def test_errors_name_the_file_and_key(tmp_path: Path, old: str, new: str, key: str, problem: str) -> None:
    assert old in MINIMAL
    path = _write(tmp_path, MINIMAL.replace(old, new))
    with pytest.raises(ModelError) as info:
        load_model(path)
    assert info.value.source == str(path)
    assert info.value.key == key
    assert problem in info.value.problem


def test_linac_tables_are_refused_in_an_afterloader_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as info:
        load_model(_write(tmp_path, MINIMAL + "\n[mlc]\ndevice_type = 'MLCX'\n"))
    assert info.value.key == "mlc"
