"""HTTPS: `huitong serve --tls-cert/--tls-key` serves FHIR over TLS (1.2 or later) with HSTS; a
client that trusts the certificate works as before, one speaking plain HTTP gets nothing."""
import json

import requests
import websocket

from conftest import Server, self_signed


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
        # The subscription websocket is wss:// on the same port.
        sid = requests.post(server.base + "/Subscription", verify=cert, json={
            "resourceType": "Subscription", "status": "requested", "reason": "wss", "criteria": "Observation?code=718-7",
            "channel": {"type": "websocket", "payload": "application/fhir+json"}}).json()["id"]
        binding = requests.get(f"{server.base}/Subscription/{sid}/$get-ws-binding-token", verify=cert).json()
        params = {p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in binding["parameter"]}
        assert params["websocket-url"] == f"wss://127.0.0.1:{server.port}/ws/subscriptions"
        ws = websocket.create_connection(params["websocket-url"], timeout=30, sslopt={"ca_certs": cert})
        ws.send("bind-with-token " + params["token"])
        handshake = json.loads(ws.recv())
        assert handshake["entry"][0]["resource"]["parameter"][2]["valueCode"] == "handshake"
        ws.close()
    finally:
        server.stop()
