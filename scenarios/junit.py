"""JUnit XML for CI: one test suite per scenario, one test case per expectation."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path

from scenarios.runner import ScenarioResult


def junit_xml(results: Iterable[ScenarioResult]) -> str:
    """The JUnit XML document for ``results`` (failures carry the expectation's message and why)."""
    root = ET.Element("testsuites", name="rtsim scenarios")
    total = failures = 0
    for result in results:
        scenario = result.scenario
        suite = ET.SubElement(
            root,
            "testsuite",
            name=scenario.name,
            tests=str(len(result.results)),
            failures=str(sum(not r.passed for r in result.results)),
            time=f"{result.wall_s:.3f}",
        )
        ET.SubElement(ET.SubElement(suite, "properties"), "property", name="seed", value=str(result.seed))
        for r in result.results:
            total += 1
            case = ET.SubElement(
                suite, "testcase", classname=f"scenario.{scenario.name}", name=f"{r.key} {r.description}"
            )
            if not r.passed:
                failures += 1
                text = r.message + (f"\nWhy it matters: {r.why}" if r.why else "")
                failure = ET.SubElement(case, "failure", message=r.message)
                failure.text = text
            else:
                ET.SubElement(case, "system-out").text = r.message
    root.set("tests", str(total))
    root.set("failures", str(failures))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(path: Path, results: Iterable[ScenarioResult]) -> None:
    Path(path).write_text(junit_xml(results), encoding="utf-8")
