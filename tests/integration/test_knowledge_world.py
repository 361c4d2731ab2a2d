"""Knowledge on the synthetic world, with inputs and outputs on S3 (moto on loopback)."""

from __future__ import annotations

import ast
import json

import pyarrow.compute as pc

from georay.data.manifest import read_manifest
from georay.data.storage import read_bytes
from georay.knowledge import KnowledgeConfig, build
from georay.protocol.sft import read_sft


def test_world_clues_and_manifest_on_s3(s3_bucket):
    from georay.synth.world import SynthConfig, generate_world

    world = f"s3://{s3_bucket}/world"
    generate_world(SynthConfig(output=world, n=24, countries=4, seed=5, width=96, height=72,
                               workers=1))  # fmt: skip
    out = f"s3://{s3_bucket}/sft"
    summary = build(KnowledgeConfig(output=out, clues=f"{world}/clues.jsonl",
                                    manifest=f"{world}/manifest.parquet"))  # fmt: skip
    manifest = read_manifest(f"{world}/manifest.parquet")
    train = manifest.filter(pc.equal(manifest["split"], "train"))
    truth = {r["image_id"]: r for r in train.to_pylist()}

    # Every clue and every manifest row is accounted for; only held-out views are dropped.
    for stage in ("reasoning", "location"):
        s = summary[stage]
        assert s["rows_in"] == len(manifest) == s["kept"] + s["dropped"]
        assert s["kept"] == len(train)
        assert set(s["dropped_by_reason"]) <= {"held_out_split"}

    reasoning = read_sft(f"{out}/reasoning.jsonl")
    location = read_sft(f"{out}/location.jsonl")
    assert {e.id for e in reasoning} == {e.id for e in location} == set(truth)
    from georay.geo.gazetteer import get_gazetteer

    gaz = get_gazetteer()
    for ex in location:
        answer = ast.literal_eval(ex.answer)
        row = truth[ex.id]
        assert gaz.country_code(answer["country"]) == row["country"]
        assert answer["city"] == row["city"]
        assert ex.image == row["uri"] and ex.image.startswith(f"s3://{s3_bucket}/world/images/")
    for ex in reasoning:  # the clue's label wins; the reasons are the clue text
        assert gaz.country_code(ast.literal_eval(ex.answer)["country"]) == truth[ex.id]["country"]
    dropped = read_bytes(f"{out}/dropped.jsonl").decode().splitlines()
    assert len(dropped) == summary["reasoning"]["dropped"] + summary["location"]["dropped"]
    assert json.loads(read_bytes(f"{out}/summary.json"))["location"] == summary["location"]
