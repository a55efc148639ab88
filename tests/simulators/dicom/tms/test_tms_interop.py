"""The embedded TMS against third-party SCUs: dcmtk (echoscu, storescu, findscu -S, movescu, getscu) and
pynetdicom's own ``findscu -U`` app against the UPS worklist. The C-MOVE destination is a pynetdicom
storage SCP (dcmtk's storescp would bind 0.0.0.0), so dcmtk only plays the SCU side.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydicom import dcmread
from tms_helpers import PLAN_PATH, read_plan

from simulators.dicom.peers import Peer
from simulators.dicom.tms import client

pytestmark = pytest.mark.interop

PLAN_UID = "1.2.840.114358.420.20100605152044.2"
STUDY_UID = "1.2.840.4027.3.20100520.114447"


def dcmtk(tool: str) -> str:
    path = Path("/usr/bin") / tool
    if not path.is_file():
        pytest.skip(f"dcmtk {tool} not installed at {path} (apt-get install dcmtk)")
    return str(path)


def run(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False, cwd=cwd)


def test_dcmtk_echo_store_find(tms, tmp_path):
    port = str(tms.port)
    echo = run([dcmtk("echoscu"), "-aet", "RTSIM", "-aec", "TMS", "127.0.0.1", port])
    assert echo.returncode == 0, echo.stderr
    stored = run([dcmtk("storescu"), "-aet", "RTSIM", "-aec", "TMS", "127.0.0.1", port, str(PLAN_PATH)])
    assert stored.returncode == 0, stored.stderr
    assert PLAN_UID in tms.objects
    keys = ["-k", "QueryRetrieveLevel=IMAGE", "-k", "SOPInstanceUID", "-k", "SOPClassUID"]
    found = run(
        [
            dcmtk("findscu"),
            "-S",
            "-aet",
            "RTSIM",
            "-aec",
            "TMS",
            "-X",
            "-od",
            str(tmp_path),
            *keys,
            "127.0.0.1",
            port,
        ]
    )
    assert found.returncode == 0, found.stderr
    responses = [dcmread(p, force=True) for p in sorted(tmp_path.glob("rsp*.dcm"))]
    assert [str(r.SOPInstanceUID) for r in responses] == [PLAN_UID]
    refused = run([dcmtk("echoscu"), "-aet", "STRANGER", "-aec", "TMS", "127.0.0.1", port])
    assert refused.returncode != 0


def test_dcmtk_movescu_and_getscu(tms, device, tmp_path):
    client.store(Peer("TMS", "127.0.0.1", tms.port), [read_plan()])
    keys = [
        "-k",
        "QueryRetrieveLevel=IMAGE",
        "-k",
        f"StudyInstanceUID={STUDY_UID}",
        "-k",
        f"SOPInstanceUID={PLAN_UID}",
    ]
    moved = run(
        [
            dcmtk("movescu"),
            "-S",
            "-aet",
            "TDD",
            "-aec",
            "TMS",
            "-aem",
            "TDD",
            *keys,
            "127.0.0.1",
            str(tms.port),
        ]
    )
    assert moved.returncode == 0, moved.stderr
    assert device.wait_for(lambda: len(device.stored) == 1)
    assert device.stored[0].SOPInstanceUID == PLAN_UID
    out = tmp_path / "get"
    out.mkdir()
    got = run(
        [
            dcmtk("getscu"),
            "-S",
            "-aet",
            "TDD",
            "-aec",
            "TMS",
            "-od",
            str(out),
            *keys,
            "127.0.0.1",
            str(tms.port),
        ]
    )
    assert got.returncode == 0, got.stderr
    files = list(out.iterdir())
    assert len(files) == 1
    assert dcmread(files[0]).SOPInstanceUID == PLAN_UID


def test_pynetdicom_findscu_ups_against_the_worklist(tms, tmp_path):
    app = Path(sys.executable).parent / "findscu"
    if not app.is_file():
        pytest.skip(f"pynetdicom's findscu app not found at {app}")
    (scheduled,) = client.schedule_plan(read_plan(), "LINAC1", 1, tms=Peer("TMS", "127.0.0.1", tms.port))
    keys = ["-k", "ProcedureStepState=SCHEDULED", "-k", "ProcedureStepLabel=", "-k", "TransactionUID="]
    result = run(
        [str(app), "-U", "-w", "-aet", "RTSIM", "-aec", "TMS", *keys, "127.0.0.1", str(tms.port)],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    responses = [dcmread(p, force=True) for p in sorted(tmp_path.glob("rsp*.dcm"))]
    assert [str(r.SOPInstanceUID) for r in responses] == [scheduled.ups_uid]
    assert responses[0].ProcedureStepLabel == "76Plan2_1path Fx 1/5"
    assert "TransactionUID" not in responses[0]
