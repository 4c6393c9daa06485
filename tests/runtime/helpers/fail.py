"""Command-test helper: write many stderr lines, then exit with the code given as argv[1]."""

import sys

for n in range(500):
    print(f"noise line {n}", file=sys.stderr)
print("fatal: the warehouse is closed", file=sys.stderr)
sys.exit(int(sys.argv[1]))
