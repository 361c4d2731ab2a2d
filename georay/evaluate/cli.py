"""``georay evaluate``: flags map one-to-one to :class:`EvaluateConfig`."""

from georay.command import Command, show_json
from georay.evaluate.config import EvaluateConfig

HEADLINE = ("n", "country", "city", "acc_km", "geoscore", "median_km", "mean_km")


def _show(metrics: dict) -> str:
    report = metrics["config"]["output"].rstrip("/") + "/report.md"
    if len(metrics.get("methods", {})) > 1:
        from georay.evaluate.report import methods_table

        return methods_table(metrics) + f"\nreport: {report}"
    return show_json({k: metrics[k] for k in HEADLINE}) + f"\nreport: {report}"


COMMANDS = [
    Command(
        "evaluate",
        EvaluateConfig,
        "georay.evaluate.evaluator:evaluate",
        help="score predictions against ground truth: P/R/F1, km accuracy, GeoScore, H3 maps",
        description="Join predictions to truth on image_id and write metrics.json, per-country "
        "and per-H3-cell Parquet tables, figures and report.md into --output. The truth may be a "
        "georay manifest or a benchmark table as published (OSV-5M, Im2GPS3k / MP-16, YFCC4k / "
        "YFCC26k: recognised by its columns). Several --predictions NAME=PATH are scored side "
        "by side on the same truth rows.",
        show=_show,
    )
]
