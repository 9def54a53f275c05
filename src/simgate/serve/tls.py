"""`simgate tls init`: a local CA and a server certificate an Android phone accepts.

The Android app refuses plain HTTP to anything but 127.0.0.1 and trusts CA certificates
the user installs. So a server on the LAN needs HTTPS with a certificate for the names and
addresses the phone uses, signed by a CA installed on the phone once. The CA is kept and
reused: running init again (a new address, a new name) needs no new install on the phone.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from simgate.files import DIR_MODE, check_private, private_dir, read_private, write_private

CA_DAYS = 3650
SERVER_DAYS = 825  # the longest some clients accept for a server certificate

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Issued:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    names: list[str]
    addresses: list[Address]
    new_ca: bool


def host_names() -> list[str]:
    """This host's names: its hostname (and the .local of mDNS), and localhost."""
    host = socket.gethostname()
    names = [host, "localhost"]
    if "." not in host:
        names.insert(1, f"{host}.local")
    return list(dict.fromkeys(names))


def lan_addresses() -> list[Address]:
    """Loopback, and this host's addresses (those its name resolves to, and the one it
    would use to reach the internet; asking the kernel for a route sends nothing)."""
    found: list[str] = ["127.0.0.1", "::1"]
    with contextlib.suppress(OSError):
        found += [info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)]
    for family, probe in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")):
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.connect((probe, 9))
                found.append(sock.getsockname()[0])
        except OSError:
            pass
    addresses: list[Address] = []
    for text in found:
        address = ipaddress.ip_address(text.split("%")[0])
        if not address.is_link_local and address not in addresses:
            addresses.append(address)
    return addresses


def _own_directory(directory: Path) -> None:
    """The directory of the keys, and its missing parents, made 0700 whatever the umask;
    one that exists is closed to others if it is the user's, refused if it is not."""
    private_dir(directory)
    if directory.stat().st_uid == os.geteuid():
        directory.chmod(DIR_MODE)
    check_private(directory, directory.stat())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _load_or_make_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey,
                                               bool]:
    cert_path, key_path = directory / "ca.crt", directory / "ca.key"
    if cert_path.exists() and key_path.exists():
        key = serialization.load_pem_private_key(read_private(key_path), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return x509.load_pem_x509_certificate(cert_path.read_bytes()), key, False
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                         f"simgate local CA ({socket.gethostname()})")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    write_private(key_path, _key_pem(key))
    write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return cert, key, True


def issue(directory: Path, extra_names: list[str] | None = None) -> Issued:
    """Make (or keep) the CA in `directory` and a new server certificate for this host's
    names and addresses plus `extra_names` (names or IP addresses)."""
    _own_directory(directory)
    ca_cert, ca_key, new_ca = _load_or_make_ca(directory)
    names, addresses = host_names(), lan_addresses()
    for extra in extra_names or []:
        try:
            address = ipaddress.ip_address(extra)
        except ValueError:
            if extra not in names:
                names.append(extra)
        else:
            if address not in addresses:
                addresses.append(address)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=SERVER_DAYS))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName(n) for n in names] + [x509.IPAddress(a) for a in addresses]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_encipherment=False, content_commitment=False,
            data_encipherment=False, key_agreement=True, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_cert, server_key = directory / "server.crt", directory / "server.key"
    write_private(server_key, _key_pem(key))
    # the chain with it, so a client that trusts the CA can verify from this file alone
    write_private(server_cert, cert.public_bytes(serialization.Encoding.PEM)
                  + ca_cert.public_bytes(serialization.Encoding.PEM))
    return Issued(directory / "ca.crt", server_cert, server_key, names, addresses, new_ca)
