"""Orthanc (Debian ``orthanc``) as an external OST (issue 3 proof): the device retrieves its RT Plan from
Orthanc and stores its treatment record into Orthanc, while the embedded TMS runs the UPS worklist.

Orthanc binds 0.0.0.0 (DICOM and HTTP) and has no bind-address option, so everything runs inside a
private network namespace with only ``lo``: the test re-executes this file under ``unshare -n`` (root, as
in CI), where it brings ``lo`` up, starts Orthanc from a temporary JSON config
(``shared/reference/peers-and-validation.md`` §2(c)), waits for it by REST and C-ECHO polling (bounded),
runs the loop and prints what it found as JSON. Without root, ``unshare`` or Orthanc the test is skipped
with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ORTHANC = Path("/usr/sbin/Orthanc")
ORTHANC_AE = "ORTHANC"
ORTHANC_DICOM_PORT = 14242  # fixed ports are safe: the namespace is private to this test
ORTHANC_HTTP_PORT = 18042
DEVICE_AE = "LINAC1"
DEVICE_PORT = 11120
READY_TIMEOUT_S = 30.0
RT_BEAMS_TREATMENT_RECORD = "1.2.840.10008.5.1.4.1.1.481.4"
RESULT_PREFIX = "ORTHANC-INTEROP-RESULT "


def _skip_reason() -> str | None:
    if not ORTHANC.is_file():
        return f"Orthanc not installed at {ORTHANC} (apt-get install orthanc; scripts/install-system-deps.sh)"
    if not sys.platform.startswith("linux"):
        return "needs Linux network namespaces"
    if os.geteuid() != 0:
        return "needs root for `unshare -n` (a private network namespace: Orthanc binds 0.0.0.0)"
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs `unshare` (util-linux) and `ip` (iproute2)"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True, timeout=20, check=False)
    if probe.returncode != 0:
        return f"`unshare -n` is not permitted here: {probe.stderr.strip()}"
    return None


@pytest.mark.interop
def test_device_retrieves_the_plan_from_orthanc_and_stores_its_record_there(tmp_path: Path) -> None:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    repo = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), str(repo / "tests")])}
    proc = subprocess.run(
        ["unshare", "-n", sys.executable, __file__, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=repo,
        env=env,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    failure = f"helper failed (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    assert proc.returncode == 0, failure
    assert lines, failure
    result = json.loads(lines[-1].removeprefix(RESULT_PREFIX))

    assert result["plan_in_orthanc_before"] is True
    assert result["outcomes"] == [["COMPLETED", ""]]
    assert result["ups_state"] == "COMPLETED"
    # the record the device stored is in Orthanc, as an RT Beams Treatment Record, for the right plan
    assert result["record_uid"]
    assert result["record_in_orthanc"]["SOPClassUID"] == RT_BEAMS_TREATMENT_RECORD
    assert result["record_in_orthanc"]["ReferencedPlanUID"] == result["plan_uid"]
    assert result["orthanc_instances"] == 2  # the plan and the record, nothing else
    # the TMS's Output Information points at Orthanc, where the record really is
    assert result["output_retrieve_ae"] == ORTHANC_AE
    # a C-FIND at Orthanc (Study Root, IMAGE level) finds the record too
    assert result["record_found_by_c_find"] is True


# -- the helper, run inside the private network namespace ------------------------------------------


def _orthanc_config(work: Path) -> dict:
    """The §2(c) configuration, without the worklist plugin (not needed here)."""
    return {
        "Name": "ORTHANC-RTSIM-TEST",
        "StorageDirectory": str(work / "db"),
        "IndexDirectory": str(work / "db"),
        "HttpServerEnabled": True,
        "HttpPort": ORTHANC_HTTP_PORT,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomServerEnabled": True,
        "DicomAet": ORTHANC_AE,
        "DicomPort": ORTHANC_DICOM_PORT,
        "DicomCheckCalledAet": False,
        "DicomAlwaysAllowStore": True,
        "DicomAlwaysAllowFind": True,
        "DicomAlwaysAllowGet": True,
        "DicomAlwaysAllowMove": True,
        "DicomCheckModalityHost": False,
        "DicomModalities": {"linac": [DEVICE_AE, "127.0.0.1", DEVICE_PORT]},
        "StableAge": 1,
    }


def _rest(path: str, body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{ORTHANC_HTTP_PORT}{path}", data=data)
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def _wait_for_orthanc(proc: subprocess.Popen, log: Path) -> None:
    """REST /system answers and a C-ECHO succeeds, within READY_TIMEOUT_S; else fail with the log."""
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Orthanc exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            _rest("/system")
            ae = AE(ae_title="RTSIM")
            ae.add_requested_context(Verification)
            assoc = ae.associate("127.0.0.1", ORTHANC_DICOM_PORT, ae_title=ORTHANC_AE)
            if assoc.is_established:
                status = assoc.send_c_echo()
                assoc.release()
                if status is not None and int(status.Status) == 0:
                    return
        except OSError:
            pass
        time.sleep(0.1)  # polling interval of a bounded readiness loop, not a fixed wait
    raise RuntimeError(f"Orthanc not ready within {READY_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


def _c_find_record(record_uid: str) -> bool:
    from pydicom import Dataset
    from pynetdicom import AE
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

    ae = AE(ae_title="RTSIM")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "IMAGE"
    identifier.StudyInstanceUID = ""
    identifier.SeriesInstanceUID = ""
    identifier.SOPInstanceUID = record_uid
    identifier.SOPClassUID = ""
    assoc = ae.associate("127.0.0.1", ORTHANC_DICOM_PORT, ae_title=ORTHANC_AE)
    if not assoc.is_established:
        return False
    try:
        matches = [
            ds
            for status, ds in assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind)
            if status is not None and int(status.Status) in (0xFF00, 0xFF01) and ds is not None
        ]
    finally:
        assoc.release()
    return any(str(ds.SOPClassUID) == RT_BEAMS_TREATMENT_RECORD for ds in matches)


def _run_in_namespace(work: Path) -> dict:
    import logging

    from machine_models import load_model
    from simulators.dicom.peers import Peer
    from simulators.dicom.tdd import Device, DeviceConfig, RetryPolicy
    from simulators.dicom.tms.client import schedule_plan
    from simulators.dicom.tms.config import DEFAULT_CLIENT_AE, TmsConfig
    from simulators.dicom.tms.server import TmsServer
    from simulators.plans.samples.linac import sample_linac_plan

    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=20)
    config_path = work / "orthanc.json"
    config_path.write_text(json.dumps(_orthanc_config(work), indent=2))
    log = work / "orthanc.log"
    with log.open("w") as log_file:
        orthanc = subprocess.Popen(
            [str(ORTHANC), str(config_path)], stdout=log_file, stderr=subprocess.STDOUT
        )
    try:
        _wait_for_orthanc(orthanc, log)
        orthanc_peer = Peer(ORTHANC_AE, "127.0.0.1", ORTHANC_DICOM_PORT)
        device = Device(
            DeviceConfig(
                ae_title=DEVICE_AE,
                station="LINAC1",
                machine=load_model("truebeam-millennium120"),
                tms=Peer("TMS", "127.0.0.1", 1),  # replaced once the TMS has its port
                port=DEVICE_PORT,
                peers={ORTHANC_AE: orthanc_peer},
                ost=orthanc_peer,
                out_dir=work / "device",
                retry=RetryPolicy(attempts=3, first_delay_s=0.2),
            )
        ).start()
        tms = TmsServer(
            TmsConfig(
                data_dir=work / "tms",
                ae_title="TMS",
                port=0,
                peers=(device.peer,),
                allowed_ae_titles=(DEFAULT_CLIENT_AE,),
            )
        )
        tms.start()
        try:
            import dataclasses

            tms_peer = Peer("TMS", "127.0.0.1", tms.port)
            device.config = dataclasses.replace(device.config, tms=tms_peer)
            plan = sample_linac_plan("static-mlc", patient_id="RTSIM-ORTHANC")
            plan_uid = str(plan.SOPInstanceUID)
            scheduled = schedule_plan(plan, "LINAC1", 1, tms=tms_peer, ost=orthanc_peer)
            lookup = _rest_lookup(plan_uid)
            outcomes = device.run_once()
            assert tms.ups is not None
            ups = tms.ups.get(scheduled[0].ups_uid)
            record_uid = outcomes[0].record_uid if outcomes else ""
            record_tags = _record_tags(record_uid) if record_uid else {}
            performed = ups.get("UnifiedProcedureStepPerformedProcedureSequence") if ups is not None else None
            output = performed[0].OutputInformationSequence[0] if performed else None
            return {
                "plan_uid": plan_uid,
                "plan_in_orthanc_before": bool(lookup),
                "outcomes": [[o.state, o.reason] for o in outcomes],
                "ups_state": str(ups.ProcedureStepState) if ups is not None else "",
                "record_uid": record_uid,
                "record_in_orthanc": record_tags,
                "orthanc_instances": _rest("/statistics")["CountInstances"],
                "output_retrieve_ae": str(output.DICOMRetrievalSequence[0].RetrieveAETitle) if output else "",
                "record_found_by_c_find": _c_find_record(record_uid) if record_uid else False,
            }
        finally:
            device.close()
            tms.stop()
    finally:
        orthanc.terminate()
        try:
            orthanc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            orthanc.kill()


def _rest_lookup(uid: str) -> list:
    request = urllib.request.Request(
        f"http://127.0.0.1:{ORTHANC_HTTP_PORT}/tools/lookup", data=uid.encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def _record_tags(record_uid: str) -> dict:
    """What Orthanc stored for the record: SOP Class and the referenced plan, read back by REST."""
    found = [item for item in _rest_lookup(record_uid) if item.get("Type") == "Instance"]
    if not found:
        return {}
    tags = _rest(f"/instances/{found[0]['ID']}/simplified-tags")
    referenced = tags.get("ReferencedRTPlanSequence") or [{}]
    return {
        "SOPClassUID": tags.get("SOPClassUID", ""),
        "ReferencedPlanUID": referenced[0].get("ReferencedSOPInstanceUID", ""),
    }


if __name__ == "__main__":
    work_dir = Path(sys.argv[1])
    work_dir.mkdir(parents=True, exist_ok=True)
    print(RESULT_PREFIX + json.dumps(_run_in_namespace(work_dir)), flush=True)
