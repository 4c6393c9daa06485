"""Command-test helper: start a grandchild, record both pids in argv[1], then sleep.

With argv[2] == "stubborn" it ignores SIGTERM, so only SIGKILL stops it.
"""

import json
import os
import signal
import subprocess
import sys
import time

if len(sys.argv) > 2 and sys.argv[2] == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
with open(sys.argv[1], "w") as out:
    json.dump({"pid": os.getpid(), "child": child.pid}, out)
time.sleep(60)
