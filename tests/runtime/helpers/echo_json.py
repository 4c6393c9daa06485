"""Command-test helper: print as JSON what the process received (stdin, argv, env, cwd)."""

import json
import os
import sys

print(
    json.dumps(
        {
            "stdin": json.load(sys.stdin),
            "argv": sys.argv[1:],
            "cwd": os.getcwd(),
            "env": {k: v for k, v in os.environ.items() if k.startswith("SAGAC_")},
        }
    )
)
