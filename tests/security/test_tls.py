"""HTTPS: `huitong serve --tls-cert/--tls-key` serves FHIR over TLS (1.2 or later) with HSTS; a
client that trusts the certificate works as before, one speaking plain HTTP gets nothing."""
import datetime
import ipaddress

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import Server


def self_signed(folder):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "huitong.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = f"{folder}/server.crt", f"{folder}/server.key"
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


def test_https_with_hsts(data_dir):
    cert, key = self_signed(data_dir)
    server = Server(data_dir).use_tls(cert, key).start()
    try:
        r = requests.post(server.base + "/Patient", json={"resourceType": "Patient", "name": [{"family": "吴", "given": ["凡"]}]},
                          verify=cert)
        assert r.status_code == 201, r.text
        assert r.headers["Location"].startswith(server.base + "/Patient/"), "links name the https base"
        read = requests.get(r.headers["Location"].rsplit("/_history", 1)[0], verify=cert)
        assert read.status_code == 200
        assert read.headers["Strict-Transport-Security"].startswith("max-age=31536000")
        assert read.headers["X-Content-Type-Options"] == "nosniff"
        smart = requests.get(server.base.replace("/fhir", "") + "/.well-known/smart-configuration", verify=cert).json()
        assert smart["token_endpoint"].startswith("https://")
        # Plain HTTP to the TLS port gets no answer; an untrusted certificate is refused by the client.
        try:
            plain = requests.get(f"http://127.0.0.1:{server.port}/fhir/metadata", timeout=3)
            assert plain.status_code >= 400
        except requests.exceptions.ConnectionError:
            pass
        try:
            requests.get(server.base + "/metadata", timeout=3)
            raise AssertionError("a client not trusting the certificate connected")
        except requests.exceptions.SSLError:
            pass
    finally:
        server.stop()
