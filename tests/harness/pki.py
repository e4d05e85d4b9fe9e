"""Certificates for the TLS tests, made by `openssl` at test time (nothing secret is committed).

`make_pki(dir)` writes, all EC P-256 PEM:
  ca.pem / ca.key                  the CA every node and client trusts
  server.pem / server.key          127.0.0.1 and localhost in its SANs, serial 0x1001
  server2.pem / server2.key        the same names, serial 0x2002 (the certificate SIGHUP rotates to)
  named.pem / named.key            only DNS:localhost, no IP: dialled by IP, only a server name matches
  client.pem / client.key          a client certificate from ca (mutual TLS)
  other-ca.pem, other-client.pem/.key   an unrelated CA and a client certificate it signed
  other-server.pem/.key            a server certificate from the unrelated CA
  expired.pem / expired.key        from ca, valid only on 2020-01-01
"""

from __future__ import annotations

import subprocess
from pathlib import Path

SAN = "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
CA_CONFIG = """[ca]
default_ca = ca_default
[ca_default]
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = anything
copy_extensions = none
[anything]
commonName = supplied
"""


def openssl(cwd: Path, *args: str) -> None:
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {done.stderr.decode(errors='replace')}")


def new_key_and_csr(cwd: Path, name: str, subject: str) -> None:
    openssl(cwd, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f"{name}.key",
            "-out", f"{name}.csr", "-subj", subject)


def new_ca(cwd: Path, name: str, subject: str) -> None:
    openssl(cwd, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
            f"{name}.key", "-out", f"{name}.pem", "-days", "30", "-subj", subject)


def sign(cwd: Path, name: str, ca: str, serial: str, extensions: str | None = None) -> None:
    args = ["x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-set_serial", serial,
            "-days", "30", "-out", f"{name}.pem"]
    if extensions:
        (cwd / f"{name}.ext").write_text(extensions)
        args += ["-extfile", f"{name}.ext"]
    openssl(cwd, *args)


def make_pki(cwd: Path) -> Path:
    cwd.mkdir(parents=True, exist_ok=True)
    new_ca(cwd, "ca", "/CN=Erdtree Test CA")
    new_ca(cwd, "other-ca", "/CN=Unrelated CA")
    for name, subject, ca, serial, ext in [
        ("server", "/CN=erdtree server one", "ca", "0x1001", SAN),
        ("server2", "/CN=erdtree server two", "ca", "0x2002", SAN),
        ("named", "/CN=erdtree by name", "ca", "0x1111", "subjectAltName=DNS:localhost\n"),
        ("client", "/CN=erdtree slave", "ca", "0x3003", None),
        ("other-client", "/CN=stranger", "other-ca", "0x4004", None),
        ("other-server", "/CN=impostor", "other-ca", "0x5005", SAN),
    ]:
        new_key_and_csr(cwd, name, subject)
        sign(cwd, name, ca, serial, ext)
    # OpenSSL 3.0's `x509 -req` has no -not_before/-not_after; `openssl ca` takes dates in the past.
    (cwd / "ca.cnf").write_text(CA_CONFIG)
    (cwd / "index.txt").write_text("")
    (cwd / "serial").write_text("6006\n")
    (cwd / "expired.ext").write_text(SAN)
    new_key_and_csr(cwd, "expired", "/CN=erdtree expired")
    openssl(cwd, "ca", "-batch", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile", "ca.key", "-in", "expired.csr",
            "-out", "expired.pem", "-notext", "-startdate", "20200101000000Z", "-enddate", "20200102000000Z",
            "-extfile", "expired.ext")
    return cwd
