"""IHE MHD material for the sharing tests and benchmark: a WS/T 500-style CDA R2 discharge summary
and an ITI-65 provide Bundle (SubmissionSet List, DocumentReference, Binary) carrying it."""
import base64
import uuid

RESIDENT_ID = "urn:oid:2.16.156.10011.1.3"
CDA_CONTENT = "application/hl7-v3+xml"


def cda(rid, doc_id, title="出院小结", code="18842-5", confidentiality="N"):
    """A WS/T 500-style CDA R2 discharge summary: a header and a short body."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- 出院小结 -->
<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <realmCode code="CN"/>
  <typeId root="2.16.840.1.113883.1.3" extension="POCD_MT000040"/>
  <templateId root="2.16.156.10011.2.1.1.42"/>
  <id root="2.16.156.10011.1.1" extension="{doc_id}"/>
  <code code="{code}" codeSystem="2.16.840.1.113883.6.1" codeSystemName="LOINC" displayName="Discharge summary"/>
  <title>{title}</title>
  <effectiveTime value="20261201093000+0800"/>
  <confidentialityCode code="{confidentiality}" codeSystem="2.16.840.1.113883.5.25"/>
  <recordTarget typeCode="RCT">
    <patientRole classCode="PAT">
      <id root="2.16.156.10011.1.3" extension="{rid}"/>
      <id root="2.16.156.10011.1.12" extension="ZY-20261201"/>
      <patient classCode="PSN" determinerCode="INSTANCE">
        <name>钱琳</name>
        <administrativeGender code="2" codeSystem="2.16.156.10011.2.3.3.4"/>
        <birthTime value="19660606"/>
      </patient>
    </patientRole>
  </recordTarget>
  <author typeCode="AUT">
    <time value="20261201093000"/>
    <assignedAuthor classCode="ASSIGNED">
      <id root="2.16.156.10011.1.4" extension="D-0042"/>
      <assignedPerson><name>王医生</name></assignedPerson>
      <representedOrganization><id root="2.16.156.10011.1.5" extension="org-a"/><name>县人民医院</name></representedOrganization>
    </assignedAuthor>
  </author>
  <custodian typeCode="CST">
    <assignedCustodian>
      <representedCustodianOrganization><id root="2.16.156.10011.1.5" extension="org-a"/><name>县人民医院 &amp; 病案室</name></representedCustodianOrganization>
    </assignedCustodian>
  </custodian>
  <component>
    <structuredBody>
      <component><section><code code="8648-8" codeSystem="2.16.840.1.113883.6.1"/><text>住院经过：患者因肺炎入院，抗感染治疗后好转出院。</text></section></component>
    </structuredBody>
  </component>
</ClinicalDocument>
""".encode("utf-8")


def provide(document, replaces=None, subject=None):
    """An ITI-65 provide bundle: SubmissionSet List, DocumentReference, Binary."""
    ref, binary = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
    # XDS metadata MHD asks for beside what the CDA header gives: the kind of facility and the practice setting.
    doc = {"resourceType": "DocumentReference", "status": "current",
           "content": [{"attachment": {"contentType": CDA_CONTENT, "url": binary, "language": "zh-CN"}}],
           "context": {"facilityType": {"coding": [{"system": "http://snomed.info/sct", "code": "22232009", "display": "Hospital"}]},
                       "practiceSetting": {"coding": [{"system": "http://snomed.info/sct", "code": "394802001", "display": "General medicine"}]}}}
    if subject:
        doc["subject"] = {"reference": subject}
    if replaces:
        doc["relatesTo"] = [{"code": "replaces", "target": {"reference": f"DocumentReference/{replaces}"}}]
    submission = {"resourceType": "List", "status": "current", "mode": "working",
                  "extension": [{"url": "https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-sourceId",
                                 "valueIdentifier": {"value": "urn:oid:2.16.156.10011.1.5.42"}}],
                  "code": {"coding": [{"system": "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes", "code": "submissionset"}]},
                  "entry": [{"item": {"reference": ref}}]}
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": submission, "request": {"method": "POST", "url": "List"}},
        {"fullUrl": ref, "resource": doc, "request": {"method": "POST", "url": "DocumentReference"}},
        {"fullUrl": binary, "resource": {"resourceType": "Binary", "contentType": CDA_CONTENT,
                                         "data": base64.b64encode(document).decode()},
         "request": {"method": "POST", "url": "Binary"}},
    ]}
