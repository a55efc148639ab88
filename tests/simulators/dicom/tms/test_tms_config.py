"""Site TOML of the TMS, and TLS with a self-signed certificate made by the openssl CLI."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
from pynetdicom import AE
from tms_helpers import association, make_config, status_of

from simulators.dicom.peers import Peer
from simulators.dicom.tms.config import TmsConfigError, load_config
from simulators.dicom.tms.server import TmsServer

SITE = """
[tms]
ae_title = "OIS"
host = "127.0.0.1"
port = 0
data_dir = "data"
allowed_ae_titles = ["RTSIM", "CONSOLE"]
strict_sop_class = false

[tms.tls]
cert_file = "tms.pem"
key_file = "tms.key"

[ost]
ae_title = "OST"
port = 0

[[peers]]
ae_title = "TDD1"
host = "10.0.0.5"
port = 11113
"""


def test_load_site_toml(tmp_path):
    path = tmp_path / "site.toml"
    path.write_text(SITE)
    config = load_config(path)
    assert (config.ae_title, config.port, config.data_dir) == ("OIS", 0, tmp_path / "data")
    assert config.separate_ost
    assert config.ost_title == "OST"
    assert config.peer("TDD1") == Peer("TDD1", "10.0.0.5", 11113)
    assert config.peer("TDD9") is None
    assert config.calling_aes() == ["CONSOLE", "RTSIM", "TDD1"]
    assert not config.strict_sop_class
    assert config.tls is not None
    assert config.tls.cert_file == tmp_path / "tms.pem"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[tms]\nport = 1\n", "data_dir is required"),
        ('[tms]\ndata_dir = "d"\nport = 70000\n', r"\[tms\] port"),
        ('[tms]\ndata_dir = "d"\nae_title = "AN_AE_TITLE_TOO_LONG"\n', r"\[tms\] ae_title"),
        ('[tms]\ndata_dir = "d"\ncolour = "red"\n', "unknown key"),
        ('[tms]\ndata_dir = "d"\n[[peers]]\nae_title = "A"\nhost = "h"\n', r"\[\[peers\]\] #1"),
        ('[tms]\ndata_dir = "d"\n[tms.tls]\ncert_file = "c"\n', "key_file is required"),
        ("[tms\n", "not valid TOML"),
    ],
)
def test_config_errors_name_file_and_key(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(TmsConfigError, match=message) as error:
        load_config(path)
    assert str(path) in str(error.value)


def test_restriction_without_any_allowed_title_refuses_to_start(tmp_path):
    config = make_config(tmp_path, allowed_ae_titles=())
    with pytest.raises(TmsConfigError, match="no AE title is allowed"):
        TmsServer(config).start()


def _self_signed(directory: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not found: cannot make a self-signed certificate for the TLS test")
    cert, key = directory / "tms.pem", directory / "tms.key"
    command = [
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=localhost",
    ]
    subprocess.run(
        [*command, "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def test_tls_association_and_plain_client_refused(tmp_path):
    cert, key = _self_signed(tmp_path)
    path = tmp_path / "site.toml"
    path.write_text(
        f'[tms]\ndata_dir = "data"\nport = 0\n[tms.tls]\ncert_file = "{cert.name}"\nkey_file = "{key.name}"\n'
    )
    with TmsServer(load_config(path)) as server:
        client_context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))
        client_context.check_hostname = False
        with association(server.port, "RTSIM", tls_args=(client_context, None)) as assoc:
            assert assoc.is_established
            assert status_of(assoc.send_c_echo()) == 0
        ae = AE(ae_title="RTSIM")
        ae.add_requested_context("1.2.840.10008.1.1")
        ae.acse_timeout = ae.network_timeout = 5
        plain = ae.associate("127.0.0.1", server.port, ae_title="TMS")
        try:
            assert not plain.is_established
        finally:
            ae.shutdown()
