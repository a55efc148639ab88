"""Issue 3: protocol overhead of one fraction on loopback (everything but the simulation itself).

An embedded TMS (UPS SCP + OST) and one virtual linac run on 127.0.0.1 (:class:`LocalSite`). ``--fractions``
fractions of a small static MLC plan are scheduled for today; the device works through them one
``run_once`` at a time (RO-58 query, RO-59 plan C-MOVE, RO-60 claim, Watch subscribe, RO-61 BDI C-MOVE,
RO-62 progress N-SETs, delivery, RO-63 record C-STORE, RO-64 final N-SET, RO-65 N-ACTION, unsubscribe).

By default the TMS runs in its own process (``rtsim tms serve``), as it does at a site, and the device in
this one; ``--same-process`` runs both in one Python process (:class:`LocalSite`, as ``rtsim demo`` does),
where they also compete for the GIL.

Printed: median and 90th percentile wall time of a fraction; the wall time of the same delivery done
offline (parse, check, fast-clock simulation, record: the device's own computing, median of as many runs);
and the protocol overhead = fraction wall time - offline delivery wall time. Target: median < 250 ms.

    .venv/bin/python benchmarks/bench_fraction_overhead.py [--fractions 20] [--same-process] [--profile]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from _common import REPO_ROOT, median, percentile, verdict

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


def _time_fractions(device, fractions: int, step_log: bool) -> list[float]:
    """Time the device's ``run_once`` for each scheduled fraction; check each one COMPLETED."""
    if step_log:
        _log_steps()
    walls: list[float] = []
    for _ in range(fractions):
        started = time.perf_counter()
        outcomes = device.run_once()
        walls.append(time.perf_counter() - started)
        if [o.state for o in outcomes] != ["COMPLETED"]:
            raise SystemExit(f"fraction not completed: {[(o.state, o.reason) for o in outcomes]}")
    if device.run_once():
        raise SystemExit("work left on the worklist after every fraction was delivered")
    return walls


def _schedule(plan, fractions: int, tms, ost) -> None:
    from simulators.dicom.tms.client import schedule_plan

    start = datetime.now() - timedelta(minutes=5)
    schedule_plan(
        plan, STATION, fractions, tms=tms, ost=ost, start=start, fraction_interval=timedelta(seconds=1)
    )


def fraction_walls_same_process(fractions: int, data_dir: Path, plan, step_log: bool) -> list[float]:
    """TMS and device in this process (LocalSite)."""
    from simulators.dicom.site import DeviceSpec, LocalSite

    spec = DeviceSpec(machine="truebeam-millennium120", station=STATION, ae_title="LINAC1")
    with LocalSite(data_dir, [spec]) as site:
        _schedule(plan, fractions, site.tms_peer, site.ost_peer)
        return _time_fractions(site.devices["LINAC1"].device, fractions, step_log)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_echo(peer, process: subprocess.Popen, timeout_s: float = 30.0) -> None:
    """C-ECHO the TMS until it answers (bounded); fail if its process exits."""
    from simulators.dicom.tdd.retry import RetryPolicy
    from simulators.dicom.tdd.scu import PeerClient

    client = PeerClient("RTSIM", peer, policy=RetryPolicy(attempts=1), sleep=time.sleep)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the TMS process exited with {process.returncode}")
        with contextlib.suppress(Exception):
            if client.echo() == 0:
                return
        time.sleep(0.05)  # bounded readiness polling
    raise SystemExit(f"the TMS did not answer C-ECHO within {timeout_s} s")


def fraction_walls_tms_process(fractions: int, data_dir: Path, plan, step_log: bool) -> list[float]:
    """The TMS in its own process (``rtsim tms serve``), the device in this one."""
    from machine_models import load_model
    from simulators.dicom.peers import Peer
    from simulators.dicom.tdd import Device, DeviceConfig, RetryPolicy

    tms_port, device_port = _free_port(), _free_port()
    command = [sys.executable, "-m", "simulators", "tms", "serve", "--data-dir", str(data_dir / "tms")]
    command += ["--port", str(tms_port), "--peer", f"LINAC1=127.0.0.1:{device_port}"]
    server = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    tms = Peer("TMS", "127.0.0.1", tms_port)
    try:
        _wait_for_echo(tms, server)
        config = DeviceConfig(
            ae_title="LINAC1",
            station=STATION,
            machine=load_model("truebeam-millennium120"),
            tms=tms,
            port=device_port,
            out_dir=data_dir / "device",
            retry=RetryPolicy(attempts=3, first_delay_s=0.2),
        )
        with Device(config) as device:
            _schedule(plan, fractions, tms, None)
            return _time_fractions(device, fractions, step_log)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


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
    parser.add_argument("--same-process", action="store_true", help="TMS and device in one process")
    args = parser.parse_args(argv)
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
    logging.getLogger("simulators.dicom.tms").setLevel(logging.ERROR)  # reports to a closed device

    from simulators.plans.samples.linac import sample_linac_plan

    plan = sample_linac_plan("static-mlc", fractions=max(args.fractions, 1))
    offline = offline_delivery_s(plan, "truebeam-millennium120", args.fractions)
    with tempfile.TemporaryDirectory(prefix="rtsim-bench-") as tmp:
        measure = fraction_walls_same_process if args.same_process else fraction_walls_tms_process
        walls = measure(args.fractions, Path(tmp), plan, args.profile)
    offline_s = median(offline)
    overheads = [wall - offline_s for wall in walls]
    ok = median(overheads) < TARGET_MEDIAN_S
    where = "both in one process" if args.same_process else "TMS in its own process"
    print(
        f"issue 3: one fraction over DICOM on loopback, {args.fractions} fractions, "
        f"one device, one TMS ({where})"
    )
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
