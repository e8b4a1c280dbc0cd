"""The Hessian cost model against a measurement: one small job on the paper's ResNet18, at the
paper's K, run in a process of its own; time as a ratio to a gradient timed in that process
(what the machine's speed cancels from), memory as the rise of its peak resident memory."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO, snakemake_env
from infoopt.hessian.cost import load_costs, predict
from infoopt.hessian.options import HessianOptions

RESNET = {"name": "resnet18", "num_classes": 10, "in_channels": 3, "image_size": 32, "options": {}}
# The paper's K; a few products of each kind; Lanczos cannot stop before its last step.
OPTIONS = {
    "eval_size": 16,
    "probes": 2,
    "probe_batch": 2,
    "lanczos_max_iter": 2,
    "lanczos_tol": 1e-12,
}
# Time: the job's time in gradients, measured over predicted, within a factor 2 either way.
TIME_RATIO = (0.5, 2.0)
# Memory: never above the prediction (a job would be killed), at most 4x below it (the requests
# would waste the cluster's memory).
MEMORY_RATIO = (0.25, 1.0)

MEASURE = """
import json, os, resource, sys, time
import torch, torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from infoopt.hessian.metrics import checkpoint_hessian_table
from infoopt.hessian.options import HessianOptions
from infoopt.models import build_model

spec, options = json.loads(sys.argv[1]), HessianOptions(**json.loads(sys.argv[2]))
torch.set_num_threads(1)  # the costs are one thread's CPU time
torch.manual_seed(0)
model = build_model(**spec).eval()
side = spec["image_size"]
x = torch.randn(options.eval_size, spec["in_channels"], side, side)
y = torch.randint(0, spec["num_classes"], (options.eval_size,))

def gradient():
    with sdpa_kernel(SDPBackend.MATH):
        loss = F.cross_entropy(model(x), y)
        torch.autograd.grad(loss, list(model.parameters()), create_graph=True)

times = []
for _ in range(3):
    started = time.process_time()
    gradient()
    times.append(time.process_time() - started)
pages = int(open("/proc/self/statm").read().split()[1])
before = pages * os.sysconf("SC_PAGE_SIZE")
started = time.process_time()
checkpoint_hessian_table(model, x, y, options)
job = time.process_time() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"gradient": min(times), "job": job, "rise": peak - before}))
"""


def test_a_small_jobs_time_and_memory_are_as_predicted():
    options = HessianOptions(**OPTIONS)
    prediction = predict(options, RESNET)
    costs = load_costs()["cpu"]
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, json.dumps(RESNET), json.dumps(OPTIONS)],
        env=snakemake_env() | {"PYTHONPATH": str(REPO / "src")},
        capture_output=True,
        text=True,
        check=True,
    )
    measured = json.loads(result.stdout)

    # At the reference shape the model's gradient is costs.yaml's per image, unscaled.
    predicted_gradient = options.eval_size * costs["resnet18"]["gradient"]
    in_gradients = measured["job"] / measured["gradient"]
    time_ratio = in_gradients / (prediction.seconds / predicted_gradient)
    assert TIME_RATIO[0] < time_ratio < TIME_RATIO[1], (measured, prediction.summary())

    memory_ratio = measured["rise"] / (prediction.peak_bytes - costs["base_bytes"])
    assert MEMORY_RATIO[0] < memory_ratio < MEMORY_RATIO[1], (measured, prediction.summary())
