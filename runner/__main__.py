"""`python -m runner`: run one job (INPUT_FOLDER/OUTPUT_FOLDER from the environment), or `cache list|prune`."""

import sys

from runner.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
