"""`python -m runner`: run one job (INPUT_FOLDER/OUTPUT_FOLDER from the environment), or `cache list|prune`.

In the image the entrypoint starts it as root with RUNNER_JOB_USER set: root's supervisor
(runner/supervisor.py) then runs the job as that user. Anywhere else it runs the job itself.
"""

import os
import sys

if __name__ == "__main__":
    if os.environ.get("RUNNER_JOB_USER") and os.geteuid() == 0:
        from runner.supervisor import main
    else:
        from runner.cli import main
    sys.exit(main(sys.argv[1:]))
