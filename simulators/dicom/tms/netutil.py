"""Socket tuning shared by the TMS listeners and its client associations."""

from __future__ import annotations

import contextlib
import socket


def no_delay(sock) -> None:
    """Disable Nagle's algorithm: DIMSE sends command and data set as separate writes, and Nagle plus
    delayed ACKs cost ~40 ms per message on loopback. Accepted sockets inherit it on Linux."""
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def no_delay_association(assoc) -> None:
    """:func:`no_delay` for an established requestor association (its socket lives in the DUL)."""
    sock = getattr(getattr(getattr(assoc, "dul", None), "socket", None), "socket", None)
    if sock is not None:
        no_delay(sock)
