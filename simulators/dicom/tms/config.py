"""Site configuration of the embedded TMS, read from TOML.

```toml
[tms]
ae_title = "TMS"              # UPS SCP (Push/Pull/Watch/Event) + storage + Q/R of the BDIs
host = "127.0.0.1"            # bind address (only this one)
port = 11112                  # 0 = ephemeral
data_dir = "tms-data"         # SQLite index + DICOM files; relative to the TOML file
allowed_ae_titles = ["RTSIM"] # calling AEs accepted besides the [[peers]]
restrict_calling_ae = true    # reject any other calling AE (A-ASSOCIATE-RJ, calling AE not recognised)
require_called_ae = true      # reject associations addressed to another AE title
strict_sop_class = true       # N-SET/N-GET/N-ACTION must name the UPS Push SOP Class (else 0x0119)
require_transaction_uid = true  # false = dcm4chee-style leniency: IN PROGRESS updates without the UID
auto_continue = true          # schedule a CONTINUATION UPS when a UPS ends CANCELED with a partial record
network_timeout_s = 10

[tms.tls]                     # optional
cert_file = "tms.pem"
key_file = "tms.key"
ca_file = ""                  # set to require/verify client certificates
require_client_cert = false
outbound = false              # also use TLS for event reports and C-MOVE sub-associations

[ost]                         # optional: the Object Storage as its own AE on its own port
ae_title = "OST"
port = 11114

[[peers]]                     # AE table: devices' storage SCPs and event receivers
ae_title = "TDD1"
host = "127.0.0.1"
port = 11113
```
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from simulators.dicom.peers import Peer
from simulators.errors import RtsimError

DEFAULT_CLIENT_AE = "RTSIM"


class TmsConfigError(RtsimError):
    """The TMS configuration is unusable; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """TLS for the TMS listeners (and optionally for its outbound associations)."""

    cert_file: Path
    key_file: Path
    ca_file: Path | None = None
    require_client_cert: bool = False
    outbound: bool = False


@dataclass(frozen=True, slots=True)
class TmsConfig:
    """Where the TMS listens, who may talk to it, where it keeps its data, and its AE table."""

    data_dir: Path
    ae_title: str = "TMS"
    host: str = "127.0.0.1"
    port: int = 11112
    ost_ae_title: str | None = None  # None: the OST is the TMS AE itself
    ost_port: int = 0  # only used when ost_ae_title differs from ae_title
    peers: tuple[Peer, ...] = ()
    allowed_ae_titles: tuple[str, ...] = (DEFAULT_CLIENT_AE,)
    restrict_calling_ae: bool = True
    require_called_ae: bool = True
    strict_sop_class: bool = True
    require_transaction_uid: bool = True
    auto_continue: bool = True
    network_timeout_s: float = 10.0
    tls: TlsConfig | None = None
    source: str = field(default="(defaults)", compare=False)

    @property
    def separate_ost(self) -> bool:
        """True when the OST is its own AE title on its own port."""
        return bool(self.ost_ae_title) and self.ost_ae_title != self.ae_title

    @property
    def ost_title(self) -> str:
        """The AE title that serves the static inputs (RT Plan, records)."""
        return self.ost_ae_title if self.separate_ost else self.ae_title  # type: ignore[return-value]

    def peer(self, ae_title: str) -> Peer | None:
        """The AE table entry for ``ae_title`` (exact, trailing spaces ignored), or None."""
        wanted = ae_title.strip()
        for peer in self.peers:
            if peer.ae_title == wanted:
                return peer
        return None

    def calling_aes(self) -> list[str]:
        """The calling AE titles accepted when ``restrict_calling_ae`` is on."""
        titles = {t.strip() for t in self.allowed_ae_titles} | {p.ae_title for p in self.peers}
        return sorted(t for t in titles if t)

    def with_peers(self, *peers: Peer) -> TmsConfig:
        """A copy with more AE table entries (tests and the demo add devices this way)."""
        return replace(self, peers=self.peers + tuple(peers))


def _check_ae(value: Any, where: str) -> str:
    if not isinstance(value, str) or not 0 < len(value.strip()) <= 16 or "\\" in value:
        raise TmsConfigError(f"{where}: AE title must be 1..16 characters without backslash, got {value!r}")
    return value.strip()


def _check_port(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 65536:
        raise TmsConfigError(f"{where}: port must be an integer 0..65535, got {value!r}")
    return value


def _check_bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise TmsConfigError(f"{where}: expected true or false, got {value!r}")
    return value


def _path(value: Any, base: Path, where: str) -> Path:
    if not isinstance(value, str) or not value:
        raise TmsConfigError(f"{where}: expected a path string, got {value!r}")
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


_TMS_KEYS = {
    "ae_title",
    "host",
    "port",
    "data_dir",
    "allowed_ae_titles",
    "restrict_calling_ae",
    "require_called_ae",
    "strict_sop_class",
    "require_transaction_uid",
    "auto_continue",
    "network_timeout_s",
    "tls",
}


def config_from_dict(
    doc: dict[str, Any], *, source: str = "(dict)", base_dir: Path | None = None
) -> TmsConfig:
    """Build a :class:`TmsConfig` from a parsed TOML document; errors name ``source`` and the key."""
    base = base_dir or Path.cwd()
    unknown_top = set(doc) - {"tms", "ost", "peers"}
    if unknown_top:
        raise TmsConfigError(f"{source}: unknown section(s) {sorted(unknown_top)}; expected tms, ost, peers")
    tms = doc.get("tms", {})
    if not isinstance(tms, dict):
        raise TmsConfigError(f"{source}: [tms] must be a table")
    unknown = set(tms) - _TMS_KEYS
    if unknown:
        raise TmsConfigError(f"{source}: [tms] unknown key(s) {sorted(unknown)}")
    if "data_dir" not in tms:
        raise TmsConfigError(f"{source}: [tms] data_dir is required (where the worklist and objects live)")
    kwargs: dict[str, Any] = {"data_dir": _path(tms["data_dir"], base, f"{source}: [tms] data_dir")}
    if "ae_title" in tms:
        kwargs["ae_title"] = _check_ae(tms["ae_title"], f"{source}: [tms] ae_title")
    if "host" in tms:
        if not isinstance(tms["host"], str) or not tms["host"]:
            raise TmsConfigError(f"{source}: [tms] host must be an address string, got {tms['host']!r}")
        kwargs["host"] = tms["host"]
    if "port" in tms:
        kwargs["port"] = _check_port(tms["port"], f"{source}: [tms] port")
    if "allowed_ae_titles" in tms:
        titles = tms["allowed_ae_titles"]
        if not isinstance(titles, list):
            raise TmsConfigError(f"{source}: [tms] allowed_ae_titles must be a list of AE titles")
        kwargs["allowed_ae_titles"] = tuple(
            _check_ae(t, f"{source}: [tms] allowed_ae_titles[{i}]") for i, t in enumerate(titles)
        )
    for key in (
        "restrict_calling_ae",
        "require_called_ae",
        "strict_sop_class",
        "require_transaction_uid",
        "auto_continue",
    ):
        if key in tms:
            kwargs[key] = _check_bool(tms[key], f"{source}: [tms] {key}")
    if "network_timeout_s" in tms:
        timeout = tms["network_timeout_s"]
        if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
            raise TmsConfigError(
                f"{source}: [tms] network_timeout_s must be a positive number, got {timeout!r}"
            )
        kwargs["network_timeout_s"] = float(timeout)
    if "tls" in tms:
        kwargs["tls"] = _tls(tms["tls"], base, source)
    ost = doc.get("ost", {})
    if not isinstance(ost, dict) or set(ost) - {"ae_title", "port"}:
        raise TmsConfigError(f"{source}: [ost] takes only ae_title and port")
    if "ae_title" in ost:
        kwargs["ost_ae_title"] = _check_ae(ost["ae_title"], f"{source}: [ost] ae_title")
    if "port" in ost:
        kwargs["ost_port"] = _check_port(ost["port"], f"{source}: [ost] port")
    peers = doc.get("peers", [])
    if not isinstance(peers, list):
        raise TmsConfigError(f"{source}: peers must be an array of tables ([[peers]])")
    parsed: list[Peer] = []
    for index, entry in enumerate(peers):
        where = f"{source}: [[peers]] #{index + 1}"
        if not isinstance(entry, dict) or set(entry) != {"ae_title", "host", "port"}:
            raise TmsConfigError(f"{where}: needs exactly ae_title, host and port")
        port = _check_port(entry["port"], f"{where} port")
        if port == 0:
            raise TmsConfigError(f"{where} port: a peer needs a real port, not 0")
        parsed.append(Peer(_check_ae(entry["ae_title"], f"{where} ae_title"), str(entry["host"]), port))
    titles = [p.ae_title for p in parsed]
    duplicates = sorted({t for t in titles if titles.count(t) > 1})
    if duplicates:
        raise TmsConfigError(f"{source}: [[peers]] lists AE title(s) {duplicates} more than once")
    kwargs["peers"] = tuple(parsed)
    return TmsConfig(source=source, **kwargs)


def _tls(doc: Any, base: Path, source: str) -> TlsConfig:
    where = f"{source}: [tms.tls]"
    if not isinstance(doc, dict):
        raise TmsConfigError(f"{where} must be a table")
    unknown = set(doc) - {"cert_file", "key_file", "ca_file", "require_client_cert", "outbound"}
    if unknown:
        raise TmsConfigError(f"{where}: unknown key(s) {sorted(unknown)}")
    for key in ("cert_file", "key_file"):
        if key not in doc:
            raise TmsConfigError(f"{where}: {key} is required for TLS")
    ca = doc.get("ca_file") or None
    return TlsConfig(
        cert_file=_path(doc["cert_file"], base, f"{where} cert_file"),
        key_file=_path(doc["key_file"], base, f"{where} key_file"),
        ca_file=_path(ca, base, f"{where} ca_file") if ca else None,
        require_client_cert=_check_bool(
            doc.get("require_client_cert", False), f"{where} require_client_cert"
        ),
        outbound=_check_bool(doc.get("outbound", False), f"{where} outbound"),
    )


def load_config(path: str | Path) -> TmsConfig:
    """Read a site TOML file (relative paths in it are relative to the file)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise TmsConfigError(f"{path}: cannot read TMS config: {error.strerror or error}") from error
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise TmsConfigError(f"{path}: not valid TOML: {error}") from error
    return config_from_dict(doc, source=str(path), base_dir=path.parent)
