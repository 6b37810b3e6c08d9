"""Run in a fresh interpreter by bench.py: time from a fresh process to its first batch acknowledged, against
a warm batch of the same size. Reads pickled host records from the file named in argv[1]; prints JSON.
The first batch starts one second after the import, as a group join would let it."""

import time

_t0 = time.perf_counter()

import json  # noqa: E402
import pickle  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import function_app  # noqa: E402

_t_import = time.perf_counter()
GROUP_JOIN_S = 1.0

from localrun.platform.indexing import kafka_annotation  # noqa: E402
from localrun.platform.invocation import to_events  # noqa: E402

first, warm = pickle.loads(Path(sys.argv[1]).read_bytes())  # noqa: S301 - written by bench.py just before
annotation = kafka_annotation(function_app.app)
first_events, warm_events = to_events(first, annotation), to_events(warm, annotation)  # the host's work: untimed
# The first batch cannot come before the host has joined the consumer group, which takes a second or more
# after the worker imported the app: that is the time a warm start has. (A fresh librdkafka producer may
# also take up to 500 ms to get its idempotent producer id: it retries on a fixed 500 ms timer.)
time.sleep(max(0.0, _t_import + GROUP_JOIN_S - time.perf_counter()))
_t_ready = time.perf_counter()
function_app.settle_user_trades(first_events)
_t_first = time.perf_counter()
function_app.settle_user_trades(warm_events)
_t_warm = time.perf_counter()
print(
    json.dumps(
        {
            "import_ms": (_t_import - _t0) * 1000,
            "first_batch_ms": (_t_first - _t_ready) * 1000,
            "warm_batch_ms": (_t_warm - _t_first) * 1000,
        }
    )
)
