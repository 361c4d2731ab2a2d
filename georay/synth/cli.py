"""``georay synth``: flags map one-to-one to :class:`SynthConfig`."""

from georay.command import Command
from georay.synth.config import SynthConfig

COMMANDS = [
    Command(
        "synth",
        SynthConfig,
        "georay.synth.world:generate_world",
        help="draw a synthetic street-view world (JPEGs, manifest, clues) for demos and tests",
        description="Draw procedurally generated street views of real countries and cities: "
        "images/, manifest.parquet (with exact ADE20K class fractions and a train/test split), "
        "clues.jsonl and world.json. Deterministic: the same flags give byte-identical files.",
        presets="georay.synth",
    )
]
