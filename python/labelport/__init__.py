"""labelport: one vendor-neutral API to send records to data-labeling vendors and get the labels back.

import labelport as lp
client = lp.Client("alegion", project="<workflow id>", username=..., password=...)
batch = client.create_batch("cars-2026-11", exist_ok=True)
batch.upload(records, key="image_id").wait()
batch.wait()
for result in batch.results():
    ...
"""

from labelport import _display, callbacks, config, sandbox
from labelport._compare import Comparison, compare
from labelport._fanout import afan_out, fan_out
from labelport._labelport import (
    MAX_JSON_DEPTH,
    AsyncBatch,
    AsyncClient,
    AsyncJob,
    AsyncStream,
    AuthError,
    Batch,
    Client,
    ClientSpec,
    DuplicateRecord,
    InvalidInput,
    Job,
    LabelportError,
    NotFound,
    RateLimited,
    ResultStream,
    Stalled,
    Timeout,
    UnsupportedOperation,
    VendorError,
    __version__,
    reset_log_cache,
    vendors,
)
from labelport._show import show
from labelport.callbacks import CallbackRejected

_display.install()

__all__ = [
    "AsyncBatch",
    "AsyncClient",
    "AsyncJob",
    "AsyncStream",
    "AuthError",
    "Batch",
    "CallbackRejected",
    "Client",
    "ClientSpec",
    "Comparison",
    "DuplicateRecord",
    "InvalidInput",
    "Job",
    "LabelportError",
    "MAX_JSON_DEPTH",
    "NotFound",
    "RateLimited",
    "ResultStream",
    "Stalled",
    "Timeout",
    "UnsupportedOperation",
    "VendorError",
    "__version__",
    "afan_out",
    "callbacks",
    "compare",
    "config",
    "fan_out",
    "reset_log_cache",
    "sandbox",
    "show",
    "vendors",
]
