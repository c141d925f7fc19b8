"""The smallest useful pipedef: say hello from a container on the worker.

Run it with: python3 examples/hello.py --worker http://127.0.0.1:9009 --token-file PATH
"""

import sys

import bettertest

IMAGE = "bettertest/base:bookworm"

worker = bettertest.connect()
result = worker.run(IMAGE, 'echo "hello from $(hostname)" && uname -a')
sys.exit(result.exit_code)
