"""Socket tuning shared by the TMS listeners and its client associations (see ``dicom/assoc_tuning.py``)."""

from __future__ import annotations

from simulators.dicom.assoc_tuning import no_delay_socket, tune_requestor


def no_delay(sock) -> None:
    """Disable Nagle's algorithm: DIMSE sends command and data set as separate writes, and Nagle plus
    delayed ACKs cost ~40 ms per message on loopback. Accepted sockets inherit it on Linux."""
    no_delay_socket(sock)


def no_delay_association(assoc) -> None:
    """For an established requestor association: TCP_NODELAY on its socket (in the DUL) and a prompt
    release (:func:`simulators.dicom.assoc_tuning.prompt_release`)."""
    tune_requestor(assoc)
