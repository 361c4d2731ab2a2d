"""Ray job entrypoint: `georay curate` (fit the CLIP locatability head, score images, dedup).

    ray job submit --address http://HEAD:8265 --working-dir . \
        --runtime-env jobs/runtime_env.yaml -- python jobs/curate.py fit|score|dedup|balance ...

Flags are those of `georay curate --help`; this file parses nothing itself. Inside `ray job
submit` (and KubeRay RayJobs) Ray sets RAY_ADDRESS, so the stage's `ray.init()` joins the job's
cluster instead of starting a local one.
"""

import sys

from georay.cli import main

if __name__ == "__main__":
    sys.exit(main(["curate", *sys.argv[1:]]))
