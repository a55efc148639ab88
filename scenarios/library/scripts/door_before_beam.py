"""Escape-hatch example for ``linac-door-opened-before-beam``: a SimPy process run inside the session.

``ctx`` gives ``env`` (the SimPy environment), ``engine`` (the faults API), ``rng`` (this script's own
random stream), ``note(what, **details)`` (a trace line) and ``fault(name, **params)`` (a library fault).
"""


def door_open_at_beam_on(ctx):
    """The door is still open when the session starts; it closes 10 to 20 s later (random)."""
    ctx.engine.set_door(True)
    open_s = float(ctx.rng.uniform(10.0, 20.0))
    ctx.note(f"therapist re-enters the room for {open_s:.1f} s")
    yield ctx.env.timeout(open_s)
    ctx.engine.set_door(False)
