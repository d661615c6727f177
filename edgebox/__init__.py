"""edgebox: a BLE branch box and an mTLS cloud gateway for AI requests."""

import os as _os

# The box and the gateway size their own model threads (a classifier pool, one ONNX Runtime thread
# each). OpenBLAS would add its own pool of one thread per core behind numpy, busy-waiting after
# every small matrix-vector product: measured on the gateway under load, that pool burned more CPU
# than the classifier itself (5.2 -> 3.4 ms CPU per request with it at one thread). Must be set
# before numpy is first imported; an explicit setting in the environment wins.
_os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
