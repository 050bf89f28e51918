"""External-client conformance: real FHIR client libraries (fhirclient, fhirpy) drive a
running `huitong serve`, and every resource the server returns must parse with an
independent R4 model (fhir.resources 6.4.0)."""
import uuid

import requests
from fhir.resources import construct_fhir_element
from fhirclient import client as smart_client
from fhirclient.models.observation import Observation as SmartObservation
from fhirclient.models.patient import Patient as SmartPatient
from fhirpy import SyncFHIRClient

FHIR_JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}


def assert_r4(resource):
    """The independent R4 model must accept what the server returns."""
    model = construct_fhir_element(resource["resourceType"], resource)
    assert model.resource_type == resource["resourceType"]
    return model


def test_fhirclient_create_read_update_delete(shared_server):
    smart = smart_client.FHIRClient(settings={"app_id": "huitong-conformance", "api_base": shared_server.base + "/"})
    patient = SmartPatient({"name": [{"family": "张", "given": ["伟"]}], "gender": "male", "birthDate": "1980-02-29"})
    created = patient.create(smart.server)
    assert created["resourceType"] == "Patient"
    assert_r4(created)
    pid = created["id"]

    read = SmartPatient.read(pid, smart.server)
    assert read.name[0].family == "张"
    assert read.meta.versionId == "1"

    read.gender = "female"
    updated = read.update(smart.server)
    assert updated["meta"]["versionId"] == "2"
    assert SmartPatient.read(pid, smart.server).gender == "female"

    obs = SmartObservation({"status": "final", "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                            "subject": {"reference": f"Patient/{pid}"},
                            "valueQuantity": {"value": 120.50, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}})
    obs_created = obs.create(smart.server)
    assert_r4(obs_created)
    assert obs_created["valueQuantity"]["value"] == 120.5

    read.delete(smart.server)
    assert requests.get(f"{shared_server.base}/Patient/{pid}").status_code == 410


def test_fhirpy_create_update_search_delete(shared_server):
    fc = SyncFHIRClient(shared_server.base)
    ident = str(uuid.uuid4())
    patient = fc.resource("Patient", name=[{"family": "李", "given": ["娜"]}], gender="female",
                          identifier=[{"system": "urn:oid:2.16.156.10011.1.1", "value": ident}])
    patient.save()
    assert patient.id
    assert patient["meta"]["versionId"] == "1"
    patient["birthDate"] = "1975-06-01"
    patient.save()
    fetched = fc.reference("Patient", patient.id).to_resource()
    assert fetched["birthDate"] == "1975-06-01"
    assert fetched["meta"]["versionId"] == "2"
    assert_r4(fetched.serialize())

    found = fc.resources("Patient").search(identifier=f"urn:oid:2.16.156.10011.1.1|{ident}").fetch()
    assert [p.id for p in found] == [patient.id]

    patient.delete()
    assert requests.get(f"{shared_server.base}/Patient/{patient.id}").status_code == 410


def test_every_returned_resource_parses_as_r4(shared_server):
    base = shared_server.base
    bundle = {
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:6f1c2b1e-0c5e-4c61-9d0a-111111111111",
             "resource": {"resourceType": "Patient", "name": [{"family": "王"}]},
             "request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Encounter", "status": "finished",
                          "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                          "subject": {"reference": "urn:uuid:6f1c2b1e-0c5e-4c61-9d0a-111111111111"}},
             "request": {"method": "POST", "url": "Encounter"}},
        ],
    }
    r = requests.post(base, json=bundle, headers={**FHIR_JSON, "Prefer": "return=representation"})
    assert r.status_code == 200, r.text
    response_bundle = r.json()
    assert_r4(response_bundle)
    for entry in response_bundle["entry"]:
        assert_r4(entry["resource"])
    encounter = response_bundle["entry"][1]["resource"]
    assert encounter["subject"]["reference"] == "Patient/" + response_bundle["entry"][0]["resource"]["id"]

    assert_r4(requests.get(f"{base}/metadata").json())
    assert_r4(requests.get(f"{base}/_history").json())
    assert_r4(requests.get(f"{base}/Patient/_history").json())
    bad = requests.post(f"{base}/Patient", data='{"resourceType":"Patient","birthDate":"1990-13-45"}', headers=FHIR_JSON)
    assert bad.status_code == 400
    outcome = assert_r4(bad.json())
    assert outcome.issue[0].expression == ["Patient.birthDate"]


def test_version_headers_and_conditional_create(shared_server):
    base = shared_server.base
    ident = str(uuid.uuid4())
    body = {"resourceType": "Patient", "identifier": [{"system": "urn:test", "value": ident}]}
    first = requests.post(f"{base}/Patient", json=body, headers={**FHIR_JSON, "If-None-Exist": f"identifier=urn:test|{ident}"})
    assert first.status_code == 201
    assert first.headers["ETag"] == 'W/"1"'
    assert "/_history/1" in first.headers["Location"]
    second = requests.post(f"{base}/Patient", json=body, headers={**FHIR_JSON, "If-None-Exist": f"identifier=urn:test|{ident}"})
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    pid = first.json()["id"]
    stale = requests.put(f"{base}/Patient/{pid}", json={**body, "id": pid}, headers={**FHIR_JSON, "If-Match": 'W/"5"'})
    assert stale.status_code == 412
    assert_r4(stale.json())
