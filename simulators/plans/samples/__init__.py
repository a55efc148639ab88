"""Generators of sample RT Plans (no public plans ship with rtsim's dependencies)."""
