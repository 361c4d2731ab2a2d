"""Ray job entrypoint: `georay evaluate` (metrics and report of a predictions table).

    ray job submit --address http://HEAD:8265 --working-dir . \
        --runtime-env jobs/runtime_env.yaml -- python jobs/evaluate.py --predictions ... --output ...

Flags are those of `georay evaluate --help`; this file parses nothing itself. Inside `ray job
submit` (and KubeRay RayJobs) Ray sets RAY_ADDRESS, so the stage's `ray.init()` joins the job's
cluster instead of starting a local one.
"""

import sys

from georay.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
