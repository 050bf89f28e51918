"""README.md's "Try it" section, run as written: the commands of its first block against a fresh
`huitong serve --dev`, those of its second with the server stopped, each answer checked. The only
substitutions are the ones a reader's machine makes for them: the port (the test's own instead of
8080) and the binary (the build under test instead of `.build/release/huitong`). The commands run
in a fresh folder with the project's `examples/` beside them, so `./huitong-data` is new."""
import json
import os
import re
import shutil
import subprocess
import tempfile

import pytest
import requests

from conftest import BINARY, ROOT, free_port


def without_comment(line, quoted):
    """The line up to a shell comment (a `#` outside quotes, at the start or after a space), and
    whether a single quote is still open at its end (`quoted`: open at its start)."""
    out = []
    for i, ch in enumerate(line):
        if ch == "'":
            quoted = not quoted
        elif ch == "#" and not quoted and (i == 0 or line[i - 1].isspace()):
            break
        out.append(ch)
    return "".join(out), quoted


def walkthrough():
    """The shell blocks of the "Try it" section, each a list of commands (continuations joined)."""
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    section = text.split("## Try it", 1)[1].split("\n## ", 1)[0]
    blocks = []
    for block in re.findall(r"```sh\n(.*?)```", section, re.S):
        commands, current, quoted = [], "", False
        for line in block.splitlines():
            if not current and (not line.strip() or line.lstrip().startswith("#")):
                continue
            code, quoted = without_comment(line, quoted)
            current += line + "\n"
            # A command ends where a line does not continue it: no trailing backslash, quotes closed.
            if not code.rstrip().endswith("\\") and not quoted:
                commands.append(current.strip())
                current = ""
        blocks.append(commands)
    return blocks


def run(command, cwd, port):
    command = command.replace("localhost:8080", f"localhost:{port}").replace(".build/release/huitong", BINARY)
    done = subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{command}\nexit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done.stdout


def answer(output, command):
    try:
        return json.loads(output)
    except ValueError:
        pytest.fail(f"not JSON: {command}\n{output[:500]}")


def errors(body):
    return [i for i in body.get("issue", []) if i.get("severity") in ("error", "fatal")] if body.get("resourceType") == "OperationOutcome" else []


def entries(bundle, kind):
    return [e["resource"] for e in bundle.get("entry", []) if e.get("resource", {}).get("resourceType") == kind]


class Serve:
    def __init__(self, cwd, port):
        self.cwd, self.port = cwd, port

    def __enter__(self):
        self.log = open(os.path.join(self.cwd, "serve.log"), "ab")
        self.process = subprocess.Popen([BINARY, "serve", "--dev", "--port", str(self.port)], cwd=self.cwd, stdout=self.log, stderr=self.log)
        for _ in range(300):
            assert self.process.poll() is None, open(os.path.join(self.cwd, "serve.log")).read()[-2000:]
            try:
                if requests.get(f"http://127.0.0.1:{self.port}/ready", timeout=1).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            subprocess.run(["sleep", "0.1"])
        pytest.fail("serve --dev did not become ready")

    def __exit__(self, *exc):
        self.process.terminate()
        assert self.process.wait(timeout=15) == 0, "serve exits 0 on SIGTERM"
        self.log.close()


def test_the_readme_walkthrough_works_as_written():
    blocks = walkthrough()
    assert len(blocks) == 2, "Try it: one block with the server running, one with it stopped"
    running, stopped = blocks
    folder = tempfile.mkdtemp(prefix="huitong-readme-")
    try:
        os.symlink(os.path.join(ROOT, "examples"), os.path.join(folder, "examples"))
        port = free_port()
        with Serve(folder, port):
            answers = [answer(run(c, folder, port), c) for c in running]
        checks = [
            lambda a: a["resourceType"] == "Patient" and a["id"] == "zhang-li",
            lambda a: a["resourceType"] == "Observation" and a["subject"]["reference"] == "Patient/zhang-li",
            lambda a: a.get("total") == 1 and [p["id"] for p in entries(a, "Patient")] == ["zhang-li"],
            # The chained search finds the Observation through 张 and includes its Patient.
            lambda a: len(entries(a, "Observation")) == 1 and [p["id"] for p in entries(a, "Patient")] == ["zhang-li"],
            lambda a: len(entries(a, "Person")) == 1
                      and any(l["target"]["reference"] == "Patient/zhang-li" for l in entries(a, "Person")[0]["link"]),
            lambda a: a["resourceType"] == "Parameters" and any(p["name"] == "targetIdentifier" for p in a.get("parameter", [])),
            lambda a: {r["resourceType"] for r in (e["resource"] for e in a["entry"])} >= {"Patient", "Observation"},
            lambda a: a["resourceType"] == "Bundle" and a["type"] == "searchset",
            # $validate tells what is missing and stores nothing.
            lambda a: [i.get("expression") for i in errors(a)] == [["Observation.code"]],
            # The card: its id, the resident's master Person, and no error.
            lambda a: not errors(a) and bool(a.get("id")) and a.get("person", "").startswith("Person/"),
        ]
        assert len(answers) == len(checks), f"the running block has {len(answers)} commands; this test checks {len(checks)}"
        for command, got, check in zip(running, answers, checks):
            assert check(got), f"{command}\n{json.dumps(got, ensure_ascii=False)[:1500]}"
        for command, got in list(zip(running, answers))[:8]:
            assert not errors(got), command

        outputs = [run(c, folder, port) for c in stopped]
        assert len(outputs) == 3
        assert os.path.exists(os.path.join(folder, "rules.json")), "empi train wrote its rules"
        with Serve(folder, port):
            base = f"http://127.0.0.1:{port}/fhir"
            assert requests.get(f"{base}/Patient/wang-fang").status_code == 200, "the example transaction Bundle was imported"
            observations = requests.get(f"{base}/Observation", params={"subject": "Patient/wang-fang"}).json()
            assert len(entries(observations, "Observation")) == 2, "the example NDJSON was imported"
            chained = requests.get(f"{base}/Observation", params={"subject:Patient.name": "张"}).json()
            assert len(entries(chained, "Observation")) == 1, "the walkthrough's data survived reindex"
    finally:
        shutil.rmtree(folder, ignore_errors=True)
