"""Issue 3: protocol overhead of one fraction on loopback (everything but the simulation itself).

An embedded TMS (UPS SCP + OST) and one virtual linac run on 127.0.0.1 (:class:`LocalSite`). ``--fractions``
fractions of a small static MLC plan are scheduled for today; the device works through them one
``run_once`` at a time (RO-58 query, RO-59 plan C-MOVE, RO-60 claim, Watch subscribe, RO-61 BDI C-MOVE,
RO-62 progress N-SETs, delivery, RO-63 record C-STORE, RO-64 final N-SET, RO-65 N-ACTION, unsubscribe).

Printed: median and 90th percentile wall time of a fraction; the wall time of the same delivery done
offline (parse, check, fast-clock simulation, record: the device's own computing, median of as many runs);
and the protocol overhead = fraction wall time - offline delivery wall time. Target: median < 250 ms.

    .venv/bin/python benchmarks/bench_fraction_overhead.py [--fractions 20] [--profile]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from _common import median, percentile, verdict

TARGET_MEDIAN_S = 0.250
STATION = "LINAC1"


def offline_delivery_s(plan, machine: str, runs: int) -> list[float]:
    """Wall times of the same fraction delivered offline (no network) through the same session."""
    from machine_models import load_model
    from simulators.devices.session import DeliverySession, SessionRequest

    model = load_model(machine)
    walls = []
    for run in range(runs):
        started = time.perf_counter()
        outcome = DeliverySession(SessionRequest(plan_dataset=plan, machine=model, seed=run)).run()
        if outcome.record is None:
            raise SystemExit(f"offline delivery failed: {outcome.refused_reasons}")
        walls.append(time.perf_counter() - started)
    return walls


def fraction_walls(fractions: int, data_dir: Path, plan, step_log: bool) -> list[float]:
    """Schedule ``fractions`` fractions for today and time the device's ``run_once`` for each."""
    from simulators.dicom.site import DeviceSpec, LocalSite
    from simulators.dicom.tms.client import schedule_plan
    from simulators.dicom.tms.config import DEFAULT_CLIENT_AE  # noqa: F401  (the scheduler's AE)

    spec = DeviceSpec(machine="truebeam-millennium120", station=STATION, ae_title="LINAC1")
    walls: list[float] = []
    with LocalSite(data_dir, [spec]) as site:
        schedule_plan(
            plan,
            STATION,
            fractions,
            tms=site.tms_peer,
            ost=site.ost_peer,
            start=datetime.now() - timedelta(minutes=5),
            fraction_interval=timedelta(seconds=1),
        )
        device = site.devices["LINAC1"].device
        if step_log:
            _log_steps()
        for _ in range(fractions):
            started = time.perf_counter()
            outcomes = device.run_once()
            walls.append(time.perf_counter() - started)
            if [o.state for o in outcomes] != ["COMPLETED"]:
                raise SystemExit(f"fraction not completed: {[(o.state, o.reason) for o in outcomes]}")
        if device.run_once():
            raise SystemExit("work left on the worklist after every fraction was delivered")
    return walls


def _log_steps() -> None:
    """Print every TDW-II step of the device with a millisecond timestamp (for --profile)."""
    started = time.perf_counter()

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            print(f"  {1000 * (time.perf_counter() - started):9.1f} ms  {record.getMessage()[:100]}")

    log = logging.getLogger("simulators.dicom.tdd.workflow")
    log.addHandler(Handler())
    log.setLevel(logging.INFO)
    log.propagate = False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fractions", type=int, default=20, help="fractions to deliver (default 20)")
    parser.add_argument("--profile", action="store_true", help="print each TDW-II step with its time")
    args = parser.parse_args(argv)
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)

    from simulators.plans.samples.linac import sample_linac_plan

    plan = sample_linac_plan("static-mlc", fractions=max(args.fractions, 1))
    offline = offline_delivery_s(plan, "truebeam-millennium120", args.fractions)
    with tempfile.TemporaryDirectory(prefix="rtsim-bench-") as tmp:
        walls = fraction_walls(args.fractions, Path(tmp), plan, args.profile)
    offline_s = median(offline)
    overheads = [wall - offline_s for wall in walls]
    ok = median(overheads) < TARGET_MEDIAN_S
    print(f"issue 3: one fraction over DICOM on loopback, {args.fractions} fractions, one device, one TMS")
    print(
        f"  fraction wall time      median {1000 * median(walls):7.1f} ms   "
        f"p90 {1000 * percentile(walls, 0.9):7.1f} ms"
    )
    print(f"  offline delivery        median {1000 * offline_s:7.1f} ms   (parse, check, simulate, record)")
    print(
        f"  protocol overhead       median {1000 * median(overheads):7.1f} ms   "
        f"p90 {1000 * percentile(overheads, 0.9):7.1f} ms   target < {1000 * TARGET_MEDIAN_S:.0f} ms"
    )
    print(f"  ratio target/overhead   {TARGET_MEDIAN_S / max(median(overheads), 1e-9):.2f}x")
    print(f"issue 3 fraction overhead benchmark: {verdict(ok)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
