"""verify lists every problem of a damaged release, each one named, and exits 1."""
from __future__ import annotations

import shutil

import pyarrow.parquet as pq

from tests.builders.conftest import PAIRS_PER_CLASS, cli


def test_damaged_release_gets_every_problem_listed(built_release, release_inputs, tmp_path):
    total = release_inputs.expected_rows(PAIRS_PER_CLASS)
    upper = total - release_inputs.expected_rows(PAIRS_PER_CLASS, 50)  # rows of the tier100 shards
    damaged = tmp_path / "semantic_pairs"
    shutil.copytree(built_release, damaged)
    # 1. one embedded image replaced by other bytes (a re-encode, say)
    shard = damaged / "sp" / "tier100" / "train-00000-of-00001.parquet"
    table = pq.read_table(shard)
    images = table.column("image_b").to_pylist()
    victim = images[3]["path"]
    images[3] = {"bytes": images[3]["bytes"][:-64] + b"\xff\xd9", "path": victim}
    table = table.set_column(table.schema.get_field_index("image_b"), table.schema.field("image_b"), [images])
    pq.write_table(table, shard)
    # 2. a whole shard lost
    (damaged / "ap" / "tier100" / "train-00000-of-00001.parquet").unlink()
    # 3. a stray file where shards live
    (damaged / "sp" / "tier050" / "notes.txt").write_text("stray")
    # 4. a card edited by hand
    card = (damaged / "README.md").read_text()
    assert f"| AP images | {total} |" in card
    (damaged / "README.md").write_text(card.replace(f"| AP images | {total} |", f"| AP images | {total + 1} |"))

    result = cli("verify", damaged)
    assert result.returncode == 1, result.stdout + result.stderr
    problems = result.stderr
    assert f"config sp: {victim}: embedded bytes do not match sha256" in problems
    assert f"config ap: {total - upper} rows loaded, {total} expected" in problems
    assert f"config ap_100: {total - upper} rows loaded, {total} expected" in problems
    assert "is missing" in problems and "ap_50" not in problems  # ap_50 lists tier050 only: intact
    assert "sp/tier050/notes.txt: unexpected file" in problems
    assert "README.md: differs from the card rendered from the data" in problems
    assert "Traceback" not in problems

