"""``georay predict`` and ``georay export``: flags map one-to-one to their configs."""

from georay.command import Command
from georay.predict.config import ExportConfig, ExportGeoConfig, PredictConfig

COMMANDS = [
    Command(
        "predict",
        PredictConfig,
        # The VLM alone, or fused with --gallery (the archive layer dispatches).
        "georay.archive.job:predict",
        help="geotag images in bulk with a trained model (Ray Data, resumable)",
        description="Geotag every image of --input with --model; writes OUT/predictions/*.parquet "
        "(one row per image, ok or error) and OUT/summary.json. Rerun to resume.",
    ),
    Command(
        "export",
        ExportConfig,
        "georay.predict.export:export",
        help="write a training artifact as a merged Hugging Face checkpoint (for vLLM, serving)",
        description="Merge the artifact's base and adapters into one checkpoint that transformers, "
        "vLLM and ray.serve.llm load as it is (processor, chat template and the trained questions "
        "in georay.json); --lora-adapter also writes base/ + adapter/ to serve the last stage as "
        "a LoRA over a shared base.",
    ),
    Command(
        "export-geo",
        ExportGeoConfig,
        "georay.predict.geojson:export_geo",
        help="write predictions as GeoJSON (one Point Feature per answered row) for web maps, QGIS",
        description="Read a predictions table (a job's output folder, its predictions/, or a "
        "file) and write a GeoJSON FeatureCollection: one Point per answered row, the row's "
        "columns as its properties.",
    ),
]
