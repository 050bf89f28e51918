"""Shared fixtures: a real `huitong serve` process on a free loopback port."""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid

import pytest
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.environ.get("HUITONG_BIN", os.path.join(ROOT, ".build", "debug", "huitong"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


POSTGRES_URL = os.environ.get("HUITONG_TEST_POSTGRES_URL") or None


def fresh_postgres_database(prefix="huitong_py"):
    """A new, empty PostgreSQL database on the test server; returns its URL (None without a server)."""
    if not POSTGRES_URL:
        return None
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    subprocess.run(["psql", POSTGRES_URL, "-qAtc", f"CREATE DATABASE {name}"], check=True)
    head, _, tail = POSTGRES_URL.partition("?")
    return head.rsplit("/", 1)[0] + "/" + name + ("?" + tail if tail else "")


class Server:
    """A huitong server process with its own data folder (or `database` URL); can be killed and restarted."""

    def __init__(self, data_dir, database=None):
        self.data_dir = data_dir
        self.database = database
        self.start_args = []
        # `--dev`: requests without a token act as a development administrator (tests of the
        # FHIR behaviour); the security tests turn it off and use tokens.
        self.dev = True
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/fhir"
        # HTTPS (`use_tls`): the scheme, and the certificate requests checks the server's against.
        self.scheme = "http"
        self.verify = True
        self.process = None
        self.log = open(os.path.join(data_dir, "server.log"), "ab")

    def start(self):
        args = [BINARY, "serve"] + (["--dev"] if self.dev else []) + [
            "--host", "127.0.0.1", "--port", str(self.port), "--data", self.data_dir] + self.start_args
        if not self.dev and "--public-url" not in self.start_args:
            # Outside --dev the server needs the URL clients reach it at (token audiences, discovery).
            args += ["--public-url", f"{self.scheme}://127.0.0.1:{self.port}"]
        if self.database:
            args += ["--database", self.database]
        self.process = subprocess.Popen(args, stdout=self.log, stderr=self.log)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"huitong exited with {self.process.returncode}; see {self.log.name}")
            try:
                if requests.get(f"{self.scheme}://127.0.0.1:{self.port}/ready", timeout=1, verify=self.verify).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise RuntimeError("huitong did not become ready within 30 s")

    def use_tls(self, cert, key):
        self.start_args += ["--tls-cert", cert, "--tls-key", key]
        self.scheme = "https"
        self.verify = cert
        self.base = f"https://127.0.0.1:{self.port}/fhir"
        return self

    def kill9(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def data_dir():
    d = tempfile.mkdtemp(prefix="huitong-py-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def server(data_dir):
    s = Server(data_dir).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def shared_server():
    d = tempfile.mkdtemp(prefix="huitong-py-")
    s = Server(d).start()
    yield s
    s.stop()
    shutil.rmtree(d, ignore_errors=True)


def self_signed(folder):
    """A self-signed certificate for 127.0.0.1 and its key (PEM files in `folder`), for HTTPS and MLLP/TLS."""
    import datetime
    import ipaddress
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
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
