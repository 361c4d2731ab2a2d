"""Ray job entrypoint: `georay knowledge` (human clues and curated views -> SFT conversations).

    ray job submit --address http://HEAD:8265 --working-dir . \
        --runtime-env jobs/runtime_env.yaml -- python jobs/knowledge.py --output ...

Flags are those of `georay knowledge --help`; this file parses nothing itself. The stage runs on
the job's driver (no Ray tasks); it is a job so that it reads and writes where the cluster can
(S3) and chains with training in one RayJob.
"""

import sys

from georay.cli import main

if __name__ == "__main__":
    sys.exit(main(["knowledge", *sys.argv[1:]]))
