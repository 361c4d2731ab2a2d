"""Ray job entrypoint: `georay train` (one LoRA fine-tuning stage on Ray Train).

    ray job submit --address http://HEAD:8265 --working-dir . \
        --runtime-env jobs/runtime_env.yaml -- python jobs/train.py --stage reasoning|location ...

Flags are those of `georay train --help`; this file parses nothing itself. Inside `ray job
submit` (and KubeRay RayJobs) Ray sets RAY_ADDRESS, so the stage's `ray.init()` joins the job's
cluster instead of starting a local one.
"""

import sys

from georay.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
