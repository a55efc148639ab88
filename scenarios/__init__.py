"""Scripted failure-injection scenarios: a TOML format, a fault library, a runner, a bundled library.

``load_scenario(path)`` reads a scenario (format: ``docs/scenarios.md``), ``run_scenario(scenario)`` runs it
headless on the embedded TMS (or a user's TMS) and returns its trace and expectation results. The CLI is
``rtsim scenario list | run FILE``.
"""
