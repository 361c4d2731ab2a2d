"""Ray job entrypoint: `georay predict` (bulk geotagging with Ray Data).

    ray job submit --address http://HEAD:8265 --working-dir . \
        --runtime-env jobs/runtime_env.yaml -- python jobs/predict.py --input ... --model ... --output ...

Flags are those of `georay predict --help`; this file parses nothing itself. Inside `ray job
submit` (and KubeRay RayJobs) Ray sets RAY_ADDRESS, so the stage's `ray.init()` joins the job's
cluster instead of starting a local one.
"""

import sys

from georay.cli import main

if __name__ == "__main__":
    sys.exit(main(["predict", *sys.argv[1:]]))
