"""Where DICOM peers live: AE title -> host and port."""

from __future__ import annotations

import re
from dataclasses import dataclass

from simulators.errors import RtsimError

_PEER = re.compile(r"^(?P<ae>[^@=\s]{1,16})@(?P<host>[^:\s]+):(?P<port>\d{1,5})$")


class PeerSpecError(RtsimError):
    """A peer given on the command line or in config is not AE@host:port."""


@dataclass(frozen=True, slots=True)
class Peer:
    """A DICOM application entity on the network."""

    ae_title: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


def parse_peer(text: str) -> Peer:
    """Parse ``AE@host:port`` (e.g. ``TMS@127.0.0.1:11112``)."""
    match = _PEER.match(text.strip())
    if not match:
        raise PeerSpecError(f"peer {text!r}: expected AE@host:port, e.g. TMS@127.0.0.1:11112")
    port = int(match["port"])
    if not 0 < port < 65536:
        raise PeerSpecError(f"peer {text!r}: port {port} is outside 1..65535")
    return Peer(match["ae"], match["host"], port)


def parse_named_peer(text: str) -> Peer:
    """Parse ``AE=host:port`` (the ``--peer OST=127.0.0.1:11114`` form)."""
    ae, sep, rest = text.partition("=")
    if not sep:
        raise PeerSpecError(f"peer {text!r}: expected AE=host:port, e.g. OST=127.0.0.1:11114")
    return parse_peer(f"{ae}@{rest}")
