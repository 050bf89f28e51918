"""The server's embedded R4 element tables (Sources/FHIRModel/Definitions/R4Structure.swift)
must agree with an independent R4 model (fhir.resources 6.4.0) on every resource type,
element name, type and required-ness."""
import os
import re

import fhir.resources
from fhir.resources import get_fhir_model_class

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCHEMA = os.path.join(ROOT, "Sources", "FHIRModel", "Definitions", "R4Structure.swift")


def load_schema():
    text = open(SCHEMA, encoding="utf-8").read()
    body = text.split('#"""', 1)[1].rsplit('"""#', 1)[0]
    types, current = {}, None
    for line in body.splitlines():
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if line.startswith("@"):
            current = parts[0][1:]
            types[current] = {"kind": parts[1], "elements": {}}
        else:
            types[current]["elements"][parts[0]] = (parts[1].split("|"), parts[2])
    return types


def test_resource_types_match():
    schema = load_schema()
    ours = {n for n, t in schema.items() if t["kind"] == "resource"}
    assert "Patient" in ours and "ExplanationOfBenefit" in ours
    for name in ours:
        cls = get_fhir_model_class(name)
        assert cls.__fields__["resource_type"].default == name


def test_required_elements_and_names_match():
    schema = load_schema()
    mismatches = []
    for name, t in schema.items():
        if t["kind"] != "resource":
            continue
        cls = get_fhir_model_class(name)
        theirs = {}
        for field in cls.__fields__.values():
            extra = field.field_info.extra
            if not extra.get("element_property"):
                continue
            key = extra["one_of_many"] + "[x]" if "one_of_many" in extra else field.alias
            required = field.required or extra.get("element_required", False) or extra.get("one_of_many_required", False)
            theirs[key] = theirs.get(key, False) or required
        ours = {k: card in ("1", "+") for k, (_, card) in t["elements"].items()}
        if set(ours) != set(theirs):
            mismatches.append((name, sorted(set(ours) ^ set(theirs))))
        for k in ours:
            if k in theirs and ours[k] != theirs[k]:
                mismatches.append((name, k, "required" if theirs[k] else "optional"))
    assert mismatches == []


def test_observation_value_choice_types():
    schema = load_schema()
    types, card = schema["Observation"]["elements"]["value[x]"]
    assert card == "?"
    assert set(types) == {"Quantity", "CodeableConcept", "string", "boolean", "integer", "Range", "Ratio",
                          "SampledData", "time", "dateTime", "Period"}
