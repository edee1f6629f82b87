"""Start TorchServe in the foreground and stop it cleanly on SIGTERM, as a container's entrypoint would.

`torchserve --start --foreground` waits on the Java frontend it launched, but on SIGTERM it dies
alone and leaves the frontend running. Here SIGTERM goes to the frontend, which stops its
workers; the launcher then returns, and so does this, with the launcher's exit code.
Arguments are passed to `torchserve` as they are.
"""

import signal
import subprocess
import sys

import psutil

launcher = subprocess.Popen(["torchserve", "--start", "--foreground", *sys.argv[1:]])


def stop_frontend(signum, frame):
    for process in psutil.Process(launcher.pid).children():
        process.terminate()


signal.signal(signal.SIGTERM, stop_frontend)
sys.exit(launcher.wait())
