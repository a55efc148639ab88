"""Machine model files: the bundled models carry the reference numbers; bad files name file and key."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import numpy as np
import pytest

from machine_models import (
    DeviceKind,
    DoseRateServo,
    MachineModel,
    ModelError,
    available_models,
    bundled_model_path,
    describe_model,
    dump_model,
    load_model,
    loads_model,
)

BUNDLED = ["truebeam-hd120", "truebeam-millennium120", "versahd-agility"]

# Boundaries as conjuror builds them (MLC_BOUNDARIES_TB_MIL120 / _HD120), independent of our TOML form
MILLENNIUM_BOUNDARIES = np.concatenate(
    [np.arange(-200, -100 + 1, 10), np.arange(-95, 95 + 1, 5), np.arange(100, 200 + 1, 10)]
).astype(float)
HD120_BOUNDARIES = np.concatenate(
    [np.arange(-110, -40 + 1, 5), np.arange(-37.5, 37.5 + 1, 2.5), np.arange(40, 110 + 1, 5)]
).astype(float)

# A small, valid user file; the malformed cases below are edits of it.
MINIMAL = """\
schema_version = 1
kind = "linac"
model_id = "my-linac"
manufacturer = "Acme"
model_name = "Lin 1"
treatment_machine_name = "ACME1"
description = "a test machine"

[delivery]
dose_rate_servo = "continuous"

[axes.gantry]
min_position_deg = 0.0
max_position_deg = 360.0
circular = true
max_speed_deg_per_s = 6.0
max_accel_deg_per_s2 = 12.0

[axes.collimator]
min_position_deg = 0.0
max_position_deg = 360.0
circular = true
max_speed_deg_per_s = 9.0

[axes.couch_rotation]
min_position_deg = -90.0
max_position_deg = 90.0
max_speed_deg_per_s = 3.0

[axes.couch_vertical]
min_position_mm = -500.0
max_position_mm = 500.0
max_speed_mm_per_s = 50.0

[axes.couch_longitudinal]
min_position_mm = -1000.0
max_position_mm = 1000.0
max_speed_mm_per_s = 50.0

[axes.couch_lateral]
min_position_mm = -250.0
max_position_mm = 250.0
max_speed_mm_per_s = 50.0

[jaws.x]
device_types = ["X", "ASYMX"]
min_position_mm = -200.0
max_position_mm = 200.0
max_overtravel_mm = 20.0
max_speed_mm_per_s = 25.0

[jaws.y]
device_types = ["Y", "ASYMY"]
min_position_mm = -200.0
max_position_mm = 200.0
max_overtravel_mm = 100.0
max_speed_mm_per_s = 25.0

[mlc]
device_type = "MLCX"
leaf_pair_count = 4
leaf_boundaries_mm = [-20.0, -10.0, 0.0, 10.0, 20.0]
min_position_mm = -200.0
max_position_mm = 200.0
max_leaf_spread_mm = 150.0
min_leaf_gap_mm = 0.5
interdigitation = true
max_leaf_speed_mm_per_s = 25.0

[[energies]]
label = "6X"
radiation_type = "PHOTON"
nominal_energy_mev = 6.0
max_dose_rate_mu_per_min = 600.0

[[energies]]
label = "9E"
radiation_type = "ELECTRON"
nominal_energy_mev = 9.0
max_dose_rate_mu_per_min = 1000.0

[accessories]
electron_applicator_ids = ["A10"]
wedges = [
  { wedge_id = "W30", wedge_type = "STANDARD", angle_deg = 30.0 },
]
"""


def _energy(model: MachineModel, label: str):
    assert model.linac is not None
    matches = [e for e in model.linac.energies if e.label == label]
    assert len(matches) == 1, label
    return matches[0]


def _write(tmp_path: Path, text: str, name: str = "my.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------------------
# bundled models


def test_available_models_lists_the_bundled_ids_sorted() -> None:
    models = available_models()
    assert models == sorted(models)
    assert set(BUNDLED) <= set(models)


@pytest.mark.parametrize("model_id", BUNDLED)
def test_every_bundled_model_loads_as_a_linac(model_id: str) -> None:
    model = load_model(model_id)
    assert model.model_id == model_id
    assert model.kind is DeviceKind.LINAC
    assert model.schema_version == 1
    assert model.source_file == bundled_model_path(model_id)
    assert model.linac is not None
    assert model.linac.mlc is not None
    assert len(model.linac.mlc.leaf_boundaries_mm) == model.linac.mlc.leaf_pair_count + 1
    assert 0 < len(model.treatment_machine_name) <= 16


def test_millennium120_numbers_equal_the_reference() -> None:
    model = load_model("truebeam-millennium120")
    linac = model.linac
    assert linac is not None
    assert linac.mlc is not None
    assert (model.manufacturer, model.model_name, model.treatment_machine_name) == (
        "Varian Medical Systems",
        "TrueBeam",
        "TrueBeam1",
    )
    assert linac.gantry.max_speed_per_s == 6.0
    assert linac.gantry.circular
    assert linac.mlc.leaf_pair_count == 60
    assert linac.mlc.device_type == "MLCX"
    np.testing.assert_array_equal(linac.mlc.leaf_boundaries_mm, MILLENNIUM_BOUNDARIES)
    assert linac.mlc.max_leaf_speed_mm_per_s == 25.0
    assert (linac.mlc.min_position_mm, linac.mlc.max_position_mm) == (-200.0, 200.0)
    assert linac.mlc.max_leaf_spread_mm == 150.0  # above the 148.1 mm of the IHE-RO Eclipse VMAT plan
    assert linac.mlc.min_leaf_gap_mm == 0.5
    assert linac.mlc.interdigitation
    assert linac.mlc.position_noise_sd_mm == 0.03
    assert linac.dose_rate_servo is DoseRateServo.CONTINUOUS


@pytest.mark.parametrize("model_id", ["truebeam-millennium120", "truebeam-hd120"])
def test_truebeam_energies_and_accessories_equal_the_reference(model_id: str) -> None:
    model = load_model(model_id)
    linac = model.linac
    assert linac is not None
    for label, mev in [("6X", 6.0), ("10X", 10.0)]:
        energy = _energy(model, label)
        assert (energy.radiation_type, energy.nominal_energy_mev, energy.fluence_mode_id) == (
            "PHOTON",
            mev,
            None,
        )
        assert energy.max_dose_rate_mu_per_min == 600.0
        assert energy.min_dose_rate_mu_per_min == 5.0
        assert energy.dose_rate_bins_mu_per_min is None
    assert _energy(model, "6FFF").max_dose_rate_mu_per_min == 1400.0
    assert _energy(model, "10FFF").max_dose_rate_mu_per_min == 2400.0
    assert _energy(model, "6FFF").fluence_mode_id == "FFF"
    electrons = [e for e in linac.energies if e.radiation_type == "ELECTRON"]
    assert [e.nominal_energy_mev for e in electrons] == [6.0, 9.0, 12.0, 16.0, 20.0]
    assert {e.max_dose_rate_mu_per_min for e in electrons} == {1000.0}
    standard = sorted(w.angle_deg for w in linac.wedges if w.wedge_type == "STANDARD")
    dynamic = sorted(w.angle_deg for w in linac.wedges if w.wedge_type == "DYNAMIC")
    assert standard == [15.0, 30.0, 45.0, 60.0]
    assert dynamic == [10.0, 15.0, 20.0, 25.0, 30.0, 45.0, 60.0]
    assert linac.electron_applicators == ("A06", "A10", "A15", "A20", "A25")
    assert {t for jaw in linac.jaws for t in jaw.device_types} == {"X", "ASYMX", "Y", "ASYMY"}


def test_hd120_boundaries_equal_the_reference() -> None:
    model = load_model("truebeam-hd120")
    assert model.linac is not None
    assert model.linac.mlc is not None
    mlc = model.linac.mlc
    assert mlc.leaf_pair_count == 60
    np.testing.assert_array_equal(mlc.leaf_boundaries_mm, HD120_BOUNDARIES)
    assert (mlc.leaf_boundaries_mm[0], mlc.leaf_boundaries_mm[-1]) == (-110.0, 110.0)
    widths = np.diff(mlc.leaf_boundaries_mm)
    assert (np.sum(widths == 2.5), np.sum(widths == 5.0)) == (32, 28)
    assert model.linac.gantry.max_speed_per_s == 6.0
    assert model.treatment_machine_name == "TrueBeamHD"


def test_versahd_agility_numbers_equal_the_reference() -> None:
    model = load_model("versahd-agility")
    linac = model.linac
    assert linac is not None
    assert linac.mlc is not None
    assert (model.manufacturer, model.treatment_machine_name) == ("Elekta", "VersaHD1")
    assert linac.mlc.leaf_pair_count == 80
    np.testing.assert_array_equal(np.diff(linac.mlc.leaf_boundaries_mm), np.full(80, 5.0))
    assert (linac.mlc.leaf_boundaries_mm[0], linac.mlc.leaf_boundaries_mm[-1]) == (-200.0, 200.0)
    assert linac.mlc.max_leaf_speed_mm_per_s == 35.0
    assert linac.mlc.interdigitation
    # sd from the published MAE 0.145 mm, assuming zero-mean normal errors
    assert linac.mlc.position_noise_sd_mm == pytest.approx(0.145 * math.sqrt(math.pi / 2), abs=0.005)
    assert linac.gantry.max_speed_per_s == 6.0
    assert linac.dose_rate_servo is DoseRateServo.BINNED
    six_x = _energy(model, "6X")
    assert six_x.dose_rate_bins_mu_per_min == (600.0, 300.0, 150.0, 75.0, 37.5, 18.75)
    assert six_x.min_dose_rate_mu_per_min == 18.75
    assert _energy(model, "6FFF").max_dose_rate_mu_per_min == 1400.0
    assert _energy(model, "10FFF").max_dose_rate_mu_per_min == 2200.0
    for energy in linac.energies:  # every bin is DRmax / 2**k
        assert energy.dose_rate_bins_mu_per_min is not None
        for k, rate in enumerate(energy.dose_rate_bins_mu_per_min):
            assert rate == energy.max_dose_rate_mu_per_min / 2**k
    assert [(w.wedge_type, w.angle_deg) for w in linac.wedges] == [("MOTORIZED", 60.0)]
    assert {t for jaw in linac.jaws for t in jaw.device_types} == {"X", "ASYMX", "Y", "ASYMY"}


_TAG = re.compile(r"\b[HML]\b")
_NUMBER = re.compile(r"(?<![\w.])-?\d+(\.\d+)?")


@pytest.mark.parametrize("model_id", BUNDLED)
def test_every_number_in_a_bundled_file_has_a_tagged_source_comment(model_id: str) -> None:
    """Each line that sets a number says where it comes from, with an H/M/L confidence tag."""
    untagged = []
    array_tagged = False  # inside a multi-line array whose opening line carries the tag
    for number, line in enumerate(bundled_model_path(model_id).read_text().splitlines(), start=1):
        code, _, comment = line.partition("#")
        code_without_strings = re.sub(r'"[^"]*"', '""', code)
        if code.strip().startswith("schema_version"):
            continue
        if code.rstrip().endswith("["):
            array_tagged = bool(_TAG.search(comment))
            continue
        if code.strip() == "]":
            array_tagged = False
            continue
        if _NUMBER.search(code_without_strings) and not _TAG.search(comment) and not array_tagged:
            untagged.append(f"line {number}: {line.strip()}")
    assert untagged == []


def test_the_tag_check_catches_an_untagged_number() -> None:
    """Guard for the test above: a line with a number and no tag is found."""
    line = "max_speed_deg_per_s = 6.0  # from somewhere"
    code, _, comment = line.partition("#")
    assert _NUMBER.search(code)
    assert not _TAG.search(comment)


def test_describe_model_gives_the_key_numbers() -> None:
    lines = describe_model(load_model("truebeam-millennium120"))
    text = "\n".join(lines)
    assert lines[0].startswith("truebeam-millennium120: Varian Medical Systems TrueBeam (linac)")
    assert "'TrueBeam1'" in lines[0]
    assert "MLCX 60 pairs (10x10 + 40x5 + 10x10 mm), max leaf speed 25 mm/s" in text
    assert "max 6 deg/s" in text
    assert "dose-rate servo: continuous" in text
    assert "6FFF 1400" in text
    assert "10FFF 2400" in text
    assert "6E 1000" in text
    agility = "\n".join(describe_model(load_model("versahd-agility")))
    assert "MLCX 80 pairs (80x5 mm), max leaf speed 35 mm/s" in agility
    assert "dose-rate servo: binned" in agility


# --------------------------------------------------------------------------------------------------------
# user files and round trips


def test_a_user_file_loads_by_path(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL)
    for name in (path, str(path)):
        model = load_model(name)
        assert model.model_id == "my-linac"
        assert model.source_file == path
        assert model.linac is not None
        assert model.linac.mlc is not None
        assert model.linac.mlc.leaf_boundaries_mm == (-20.0, -10.0, 0.0, 10.0, 20.0)
        assert model.linac.wedges[0].wedge_id == "W30"


def test_optional_keys_take_their_documented_defaults(tmp_path: Path) -> None:
    model = load_model(_write(tmp_path, MINIMAL))
    linac = model.linac
    assert linac is not None
    assert linac.mlc is not None
    assert linac.meterset_resolution_mu == 0.01
    assert linac.beam_on_startup_s == 0.0
    assert (linac.angle_noise_sd_deg, linac.jaw_noise_sd_mm, linac.couch_noise_sd_mm) == (0.0, 0.0, 0.0)
    assert linac.collimator.max_accel_per_s2 is None
    assert linac.couch_rotation.circular is False
    assert linac.mlc.position_noise_sd_mm == 0.0
    assert linac.mlc.max_leaf_accel_mm_per_s2 is None
    assert _energy(model, "6X").min_dose_rate_mu_per_min == 5.0
    assert model.extra == {}


def test_the_format_round_trips_for_a_user_file(tmp_path: Path) -> None:
    text = MINIMAL + '\n[extra]\nsite = "Lab 2"\ncommissioned = 2024\nnotes = ["a", "b"]\n'
    first = load_model(_write(tmp_path, text))
    assert first.extra == {"site": "Lab 2", "commissioned": 2024, "notes": ["a", "b"]}
    second = load_model(_write(tmp_path, dump_model(first), "again.toml"))
    assert dataclasses.replace(second, source_file=first.source_file) == first


@pytest.mark.parametrize("model_id", BUNDLED)
def test_bundled_models_round_trip_through_dump(model_id: str) -> None:
    model = load_model(model_id)
    again = loads_model(dump_model(model), source="dumped.toml", source_file=model.source_file)
    assert again == model


def test_compact_leaf_width_segments_equal_the_explicit_list(tmp_path: Path) -> None:
    compact = MINIMAL.replace(
        "leaf_boundaries_mm = [-20.0, -10.0, 0.0, 10.0, 20.0]",
        "leaf_width_segments = [{ count = 1, width_mm = 10.0 }, { count = 2, width_mm = 10.0 },"
        " { count = 1, width_mm = 10.0 }]",
    )
    model = load_model(_write(tmp_path, compact))
    assert model.linac is not None
    assert model.linac.mlc is not None
    assert model.linac.mlc.leaf_boundaries_mm == (-20.0, -10.0, 0.0, 10.0, 20.0)
    shifted = compact.replace("[mlc]\n", "[mlc]\nfirst_leaf_boundary_mm = 0.0\n")
    model = load_model(_write(tmp_path, shifted, "shifted.toml"))
    assert model.linac is not None
    assert model.linac.mlc is not None
    assert model.linac.mlc.leaf_boundaries_mm == (0.0, 10.0, 20.0, 30.0, 40.0)


def test_explicit_dose_rate_bins_are_sorted_high_to_low(tmp_path: Path) -> None:
    text = MINIMAL.replace('dose_rate_servo = "continuous"', 'dose_rate_servo = "binned"')
    text = text.replace(
        "max_dose_rate_mu_per_min = 600.0",
        "max_dose_rate_mu_per_min = 600.0\ndose_rate_bins_mu_per_min = [150, 600, 300]",
    )
    text = text.replace(
        "max_dose_rate_mu_per_min = 1000.0", "max_dose_rate_mu_per_min = 1000.0\ndose_rate_bin_count = 1"
    )
    model = load_model(_write(tmp_path, text))
    assert _energy(model, "6X").dose_rate_bins_mu_per_min == (600.0, 300.0, 150.0)
    assert _energy(model, "6X").min_dose_rate_mu_per_min == 150.0
    assert _energy(model, "9E").dose_rate_bins_mu_per_min == (1000.0,)


# --------------------------------------------------------------------------------------------------------
# malformed files: each error names the file and the key

MALFORMED = [
    # (id, (old, new) edit of MINIMAL, expected key, words in the problem)
    (
        "schema-version",
        ("schema_version = 1", "schema_version = 2"),
        "schema_version",
        "unsupported schema_version 2",
    ),
    (
        "schema-version-type",
        ("schema_version = 1", 'schema_version = "1"'),
        "schema_version",
        "expected an integer",
    ),
    ("kind-unknown", ('kind = "linac"', 'kind = "linak"'), "kind", "unknown kind 'linak'"),
    ("kind-unsupported", ('kind = "linac"', 'kind = "tomotherapy"'), "kind", "not supported"),
    ("missing-top-key", ('manufacturer = "Acme"\n', ""), "manufacturer", "missing required key"),
    ("missing-axis", ("[axes.couch_lateral]", "[axes.couch_sideways]"), "axes.couch_sideways", "unknown key"),
    (
        "missing-speed",
        ("max_speed_deg_per_s = 6.0\n", ""),
        "axes.gantry.max_speed_deg_per_s",
        "missing required key",
    ),
    (
        "typo-key",
        ("max_speed_deg_per_s = 6.0", "max_sped_deg_per_s = 6.0"),
        "axes.gantry.max_sped_deg_per_s",
        "did you mean 'max_speed_deg_per_s'",
    ),
    (
        "wrong-unit",
        ("max_speed_deg_per_s = 6.0", "max_speed_mm_per_s = 6.0"),
        "axes.gantry.max_speed_mm_per_s",
        "did you mean 'max_speed_deg_per_s'",
    ),
    (
        "top-typo",
        ('description = "a test machine"', 'descripton = "x"'),
        "descripton",
        "did you mean 'description'",
    ),
    (
        "wrong-type",
        ("max_speed_deg_per_s = 6.0", 'max_speed_deg_per_s = "six"'),
        "axes.gantry.max_speed_deg_per_s",
        "expected a number, got string 'six'",
    ),
    (
        "bool-not-number",
        ("max_speed_deg_per_s = 6.0", "max_speed_deg_per_s = true"),
        "axes.gantry.max_speed_deg_per_s",
        "expected a number, got boolean",
    ),
    (
        "negative-speed",
        ("max_speed_deg_per_s = 6.0", "max_speed_deg_per_s = -6.0"),
        "axes.gantry.max_speed_deg_per_s",
        "must be > 0, got -6",
    ),
    (
        "negative-leaf-speed",
        ("max_leaf_speed_mm_per_s = 25.0", "max_leaf_speed_mm_per_s = -1"),
        "mlc.max_leaf_speed_mm_per_s",
        "must be > 0",
    ),
    (
        "zero-accel",
        ("max_accel_deg_per_s2 = 12.0", "max_accel_deg_per_s2 = 0"),
        "axes.gantry.max_accel_deg_per_s2",
        "must be > 0",
    ),
    (
        "min-ge-max",
        ("min_position_mm = -500.0", "min_position_mm = 600.0"),
        "axes.couch_vertical.max_position_mm",
        "must be greater than min_position_mm (600)",
    ),
    (
        "rotation-over-360",
        ("min_position_deg = -90.0", "min_position_deg = -290.0"),
        "axes.couch_rotation.max_position_deg",
        "at most 360",
    ),
    (
        "boundary-count",
        ("[-20.0, -10.0, 0.0, 10.0, 20.0]", "[-20.0, -10.0, 0.0, 10.0]"),
        "mlc.leaf_boundaries_mm",
        "expected 5 values (leaf_pair_count + 1), got 4",
    ),
    (
        "boundaries-not-increasing",
        ("[-20.0, -10.0, 0.0, 10.0, 20.0]", "[-20.0, -10.0, 10.0, 0.0, 20.0]"),
        "mlc.leaf_boundaries_mm",
        "boundaries must increase: value 3 (0) <= value 2 (10)",
    ),
    (
        "boundaries-and-segments",
        ("leaf_pair_count = 4", "leaf_pair_count = 4\nleaf_width_segments = []"),
        "mlc.leaf_boundaries_mm",
        "exactly one of",
    ),
    (
        "segments-count",
        (
            "leaf_boundaries_mm = [-20.0, -10.0, 0.0, 10.0, 20.0]",
            "leaf_width_segments = [{ count = 3, width_mm = 5.0 }]",
        ),
        "mlc.leaf_width_segments",
        "add up to 3, expected leaf_pair_count = 4",
    ),
    (
        "segment-typo",
        (
            "leaf_boundaries_mm = [-20.0, -10.0, 0.0, 10.0, 20.0]",
            "leaf_width_segments = [{ count = 4, width = 5.0 }]",
        ),
        "mlc.leaf_width_segments[0].width",
        "did you mean 'width_mm'",
    ),
    (
        "boundary-item-type",
        ("[-20.0, -10.0, 0.0, 10.0, 20.0]", '[-20.0, -10.0, "0", 10.0, 20.0]'),
        "mlc.leaf_boundaries_mm[2]",
        "expected a number",
    ),
    ("mlc-device", ('device_type = "MLCX"', 'device_type = "MLCZ"'), "mlc.device_type", "MLCX, MLCY"),
    (
        "interdigitation-missing",
        ("interdigitation = true\n", ""),
        "mlc.interdigitation",
        "missing required key",
    ),
    (
        "negative-gap",
        ("min_leaf_gap_mm = 0.5", "min_leaf_gap_mm = -0.5"),
        "mlc.min_leaf_gap_mm",
        "must be >= 0",
    ),
    (
        "jaw-type",
        ('device_types = ["X", "ASYMX"]', 'device_types = ["X", "ASYMZ"]'),
        "jaws.x.device_types",
        "got 'ASYMZ'",
    ),
    (
        "jaw-repeated",
        ('device_types = ["Y", "ASYMY"]', 'device_types = ["Y", "ASYMX"]'),
        "jaws.y.device_types",
        "already listed in jaws.x",
    ),
    (
        "jaw-overtravel",
        ("max_overtravel_mm = 20.0", "max_overtravel_mm = 250.0"),
        "jaws.x.max_overtravel_mm",
        "outside the jaw range",
    ),
    (
        "servo",
        ('dose_rate_servo = "continuous"', 'dose_rate_servo = "stepped"'),
        "delivery.dose_rate_servo",
        "expected one of continuous, binned",
    ),
    (
        "missing-delivery",
        ('[delivery]\ndose_rate_servo = "continuous"\n', ""),
        "delivery",
        "missing required key",
    ),
    (
        "binned-without-bins",
        ('dose_rate_servo = "continuous"', 'dose_rate_servo = "binned"'),
        "energies[0].dose_rate_bins_mu_per_min",
        "exactly one of",
    ),
    (
        "bins-with-continuous",
        ("max_dose_rate_mu_per_min = 600.0", "max_dose_rate_mu_per_min = 600.0\ndose_rate_bin_count = 3"),
        "energies[0].dose_rate_bin_count",
        "binned",
    ),
    ("energy-label-twice", ('label = "9E"', 'label = "6X"'), "energies[1].label", "listed twice"),
    (
        "energy-radiation",
        ('radiation_type = "ELECTRON"', 'radiation_type = "PROTON"'),
        "energies[1].radiation_type",
        "PHOTON, ELECTRON",
    ),
    (
        "energy-min-above-max",
        (
            "max_dose_rate_mu_per_min = 600.0",
            "max_dose_rate_mu_per_min = 600.0\nmin_dose_rate_mu_per_min = 700.0",
        ),
        "energies[0].min_dose_rate_mu_per_min",
        "above max_dose_rate",
    ),
    (
        "energy-negative-rate",
        ("max_dose_rate_mu_per_min = 1000.0", "max_dose_rate_mu_per_min = -1000.0"),
        "energies[1].max_dose_rate_mu_per_min",
        "must be > 0",
    ),
    (
        "wedge-type",
        ('wedge_type = "STANDARD"', 'wedge_type = "HARD"'),
        "accessories.wedges[0].wedge_type",
        "STANDARD, MOTORIZED, DYNAMIC",
    ),
    ("wedge-angle", ("angle_deg = 30.0", "angle_deg = 95.0"), "accessories.wedges[0].angle_deg", "below 90"),
    (
        "applicators-without-electrons",
        ('label = "9E"\nradiation_type = "ELECTRON"', 'label = "10X"\nradiation_type = "PHOTON"'),
        "accessories.electron_applicator_ids",
        "no ELECTRON energy",
    ),
    (
        "machine-name-too-long",
        ('treatment_machine_name = "ACME1"', 'treatment_machine_name = "ACME-LINAC-NUMBER-1"'),
        "treatment_machine_name",
        "at most 16 characters",
    ),
    ("model-id-spaces", ('model_id = "my-linac"', 'model_id = "my linac"'), "model_id", "no spaces"),
    (
        "noise-negative",
        ("[delivery]", "[noise]\njaw_sd_mm = -0.1\n\n[delivery]"),
        "noise.jaw_sd_mm",
        "must be >= 0",
    ),
    (
        "table-expected",
        ('description = "a test machine"', 'description = "x"\nnoise = 0.1'),
        "noise",
        "expected a table, got number 0.1",
    ),
    (
        "sub-table-unknown",
        ("[axes.collimator]", "[axes.collimator.sub]"),
        "axes.collimator.sub",
        "unknown key",
    ),
    (
        "wedge-not-table",
        ('{ wedge_id = "W30", wedge_type = "STANDARD", angle_deg = 30.0 },', '"W30",'),
        "accessories.wedges[0]",
        "expected a table, got string 'W30'",
    ),
]


@pytest.mark.parametrize(
    ("edit", "key", "words"),
    [pytest.param(edit, key, words, id=case_id) for case_id, edit, key, words in MALFORMED],
)
def test_malformed_file_names_file_and_key(
    tmp_path: Path, edit: tuple[str, str], key: str, words: str
) -> None:
    old, new = edit
    assert old in MINIMAL, f"test edit does not apply: {old!r}"
    path = _write(tmp_path, MINIMAL.replace(old, new, 1))
    with pytest.raises(ModelError) as caught:
        load_model(path)
    error = caught.value
    assert error.source == str(path)
    assert error.key == key, str(error)
    assert words in error.problem, str(error)
    assert str(error).startswith(f"{path}: {error.key}: ")


def test_toml_syntax_error_quotes_the_line(tmp_path: Path) -> None:
    broken = MINIMAL.replace("max_speed_deg_per_s = 9.0", "max_speed_deg_per_s = = 9.0")
    path = _write(tmp_path, broken)
    line_number = broken.splitlines().index("max_speed_deg_per_s = = 9.0") + 1
    with pytest.raises(ModelError) as caught:
        load_model(path)
    assert caught.value.source == str(path)
    assert caught.value.key == f"line {line_number}"
    assert "invalid TOML" in caught.value.problem
    assert "'max_speed_deg_per_s = = 9.0'" in caught.value.problem


def test_unknown_bundled_id_lists_the_available_ones() -> None:
    with pytest.raises(ModelError) as caught:
        load_model("truebeam-millenium120")
    message = str(caught.value)
    assert caught.value.key == "model_id"
    for model_id in BUNDLED:
        assert model_id in message
    with pytest.raises(ModelError, match="no bundled machine model"):
        bundled_model_path("nope")


def test_missing_file_is_a_model_error(tmp_path: Path) -> None:
    missing = tmp_path / "absent.toml"
    with pytest.raises(ModelError) as caught:
        load_model(missing)
    assert caught.value.source == str(missing)
    assert "no such machine model file" in caught.value.problem


def test_bundled_file_whose_id_differs_from_its_name_is_rejected(tmp_path: Path, monkeypatch) -> None:
    from machine_models import loader

    path = _write(tmp_path, MINIMAL, "other-name.toml")
    monkeypatch.setattr(loader, "available_models", lambda: ["other-name"])
    monkeypatch.setattr(loader, "bundled_model_path", lambda model_id: path)
    with pytest.raises(ModelError) as caught:
        loader.load_model("other-name")
    assert caught.value.key == "model_id"
    assert "'my-linac'" in caught.value.problem


def test_the_example_in_the_docs_loads(tmp_path: Path) -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "machine-models.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```toml\n(.*?)```", docs, flags=re.DOTALL)
    assert blocks, "no TOML example in docs/machine-models.md"
    model = load_model(_write(tmp_path, blocks[0], "example.toml"))
    assert model.model_id == "my-linac"
    assert model.linac is not None
    assert model.linac.mlc is not None
    np.testing.assert_array_equal(model.linac.mlc.leaf_boundaries_mm, MILLENNIUM_BOUNDARIES)
