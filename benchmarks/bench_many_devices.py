"""Issue 3: 20 devices against one TMS for 200 fractions in fast mode: throughput and integrity.

An embedded TMS (UPS SCP + separate OST AE) and ``--devices`` virtual linacs run on 127.0.0.1, spread
over ``--stations`` stations (default 10: two linacs share each station's worklist, so every item is
contended by two devices and the RO-60 claim race is exercised all the time). ``--fractions`` fractions
of small static MLC plans (one patient per station) are scheduled for today, then every device works in
its own thread until the worklist is empty.

Verified from the TMS's own stores after the run (not from what the devices say):
* every workitem is COMPLETED, claimed by exactly one device (its performer AE), and exactly one device
  reported COMPLETED for it (zero double claims);
* every workitem's Output Information references a record that is in the OST, and the OST holds exactly
  one RT Beams Treatment Record per workitem (zero lost records, zero duplicates).

Printed: fractions per second (wall), claim races lost, and the verdict.

    .venv/bin/python benchmarks/bench_many_devices.py [--devices 20] [--stations 10] [--fractions 200]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

from _common import verdict

STATION = "LINAC1"
RT_BEAMS_TREATMENT_RECORD = "1.2.840.10008.5.1.4.1.1.481.4"


def run(devices: int, stations: int, fractions: int, data_dir: Path) -> int:
    from simulators.dicom.site import DeviceSpec, LocalSite
    from simulators.dicom.tms.client import schedule_plan
    from simulators.plans.samples.linac import sample_linac_plan

    station_names = [f"{STATION}{n:02d}" for n in range(1, stations + 1)]
    specs = [
        DeviceSpec(
            machine="truebeam-millennium120",
            station=station_names[n % stations],
            ae_title=f"LINAC{n + 1:02d}",
        )
        for n in range(devices)
    ]
    per_station = [fractions // stations + (1 if n < fractions % stations else 0) for n in range(stations)]
    now = datetime.now()
    start = max(now - timedelta(minutes=10), now.replace(hour=0, minute=0, second=1, microsecond=0))
    with LocalSite(data_dir, specs) as site:
        began = time.perf_counter()
        scheduled = []
        for station, count in zip(station_names, per_station, strict=True):
            if count == 0:
                continue
            plan = sample_linac_plan("static-mlc", patient_id=f"RTSIM-{station}", fractions=count)
            scheduled += schedule_plan(
                plan,
                station,
                count,
                tms=site.tms_peer,
                ost=site.ost_peer,
                start=start,
                fraction_interval=timedelta(milliseconds=10),
            )
        scheduling_s = time.perf_counter() - began
        began = time.perf_counter()
        outcomes = site.run_until_idle(max_rounds=fractions + 10)
        work_s = time.perf_counter() - began
        tms = site.tms
        if tms is None or tms.ups is None or tms.objects is None:
            raise SystemExit("the TMS stopped during the run")
        ups_store, objects = tms.ups, tms.objects
        problems: list[str] = []
        uids = [fraction.ups_uid for fraction in scheduled]
        index = {row.uid: row for row in ups_store.index()}
        completed_by = Counter(o.ups_uid for o in outcomes if o.state == "COMPLETED")
        races_lost = sum(1 for o in outcomes if o.state == "NOT_CLAIMED")
        other = Counter(o.state for o in outcomes if o.state not in ("COMPLETED", "NOT_CLAIMED"))
        if other:
            problems.append(f"unexpected outcomes: {dict(other)}")
        referenced: list[str] = []
        for uid in uids:
            row = index.get(uid)
            if row is None:
                problems.append(f"UPS {uid}: not in the TMS store")
                continue
            if row.state != "COMPLETED":
                problems.append(f"UPS {uid}: {row.state}, not COMPLETED")
            if completed_by[uid] != 1:
                problems.append(f"UPS {uid}: {completed_by[uid]} devices reported COMPLETED (double claim)")
            ds = ups_store.get(uid)
            refs = _output_record_uids(ds)
            if len(refs) != 1:
                problems.append(f"UPS {uid}: {len(refs)} records in its Output Information, expected 1")
            referenced += refs
        records = [i for i in objects.instances() if i.sop_class_uid == RT_BEAMS_TREATMENT_RECORD]
        stored = Counter(i.sop_instance_uid for i in records)
        lost = [uid for uid in referenced if uid not in stored]
        if lost:
            problems.append(f"{len(lost)} referenced record(s) missing from the OST (lost)")
        if len(records) != len(uids) or len(set(referenced)) != len(uids):
            problems.append(
                f"OST holds {len(records)} records for {len(uids)} workitems "
                f"({len(set(referenced))} distinct referenced)"
            )
        performers = Counter(index[uid].performer_ae for uid in uids if uid in index)

    ok = not problems
    rate = len(uids) / work_s
    print(
        f"issue 3: {devices} devices on {stations} stations, one TMS, {len(uids)} fractions "
        "(fast mode, loopback)"
    )
    print(f"  scheduling (C-STORE plan + BDI, N-CREATE per fraction): {scheduling_s:6.1f} s")
    print(f"  delivering every fraction:                           {work_s:6.1f} s")
    print(f"  throughput: {rate:.2f} fractions/s   ({work_s / len(uids) * 1000:.0f} ms per fraction overall)")
    print(
        f"  claims: {sum(completed_by.values())} won, {races_lost} lost races (0xC302 or already taken); "
        f"devices used: {len(performers)}, busiest {max(performers.values(), default=0)} fractions"
    )
    print(f"  lost records: {len(lost)}   double claims: {sum(1 for n in completed_by.values() if n > 1)}")
    for problem in problems[:20]:
        print(f"  PROBLEM: {problem}")
    print(f"issue 3 many-devices benchmark: {verdict(ok)}")
    return 0 if ok else 1


def _output_record_uids(ups) -> list[str]:
    """SOP Instance UIDs in the UPS Performed Procedure's Output Information Sequence."""
    if ups is None:
        return []
    return [
        str(ref.ReferencedSOPInstanceUID)
        for performed in ups.get("UnifiedProcedureStepPerformedProcedureSequence") or []
        for item in performed.get("OutputInformationSequence") or []
        for ref in item.get("ReferencedSOPSequence") or []
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--stations", type=int, default=10, help="devices share these stations' worklists")
    parser.add_argument("--fractions", type=int, default=200)
    args = parser.parse_args(argv)
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
    logging.getLogger("simulators").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="rtsim-bench-") as tmp:
        return run(args.devices, max(1, min(args.stations, args.devices)), args.fractions, Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
