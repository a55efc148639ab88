"""The afterloader view (registered only when the afterloader simulator exists)."""
