"""``georay demo``: flags map one-to-one to :class:`DemoConfig`."""

from georay.command import Command
from georay.demo.config import DemoConfig


def _show(out: dict) -> str:
    from georay.demo.run import summary_table

    return summary_table(out)


COMMANDS = [
    Command(
        "demo",
        DemoConfig,
        "georay.demo.run:run_demo",
        help="run the whole pipeline on a synthetic world with tiny models (local Ray, CPU)",
        description="Synthetic world -> curate -> knowledge -> train stage 1 -> train stage 2 -> "
        "bulk predict on the held-out views -> evaluate, in one run folder (--output).",
        show=_show,
    )
]
