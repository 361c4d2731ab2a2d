"""Ray job entrypoint: `georay baseline` (CLIP zero-shot or kNN retrieval baseline, bulk).

    ray job submit --address http://HEAD:8265 --working-dir . \
        --runtime-env jobs/runtime_env.yaml -- python jobs/baseline.py zeroshot|knn ...

Flags are those of `georay baseline --help`; this file parses nothing itself. Inside `ray job
submit` (and KubeRay RayJobs) Ray sets RAY_ADDRESS, so the stage's `ray.init()` joins the job's
cluster instead of starting a local one.
"""

import sys

from georay.cli import main

if __name__ == "__main__":
    sys.exit(main(["baseline", *sys.argv[1:]]))
