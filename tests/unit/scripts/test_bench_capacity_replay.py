"""``bench capacity --replay`` starts `bench stack`'s Stack: the namespace it builds must
carry every option that Stack reads (one it lacked, ``split_cores``, crashed the replay
at start after `bench stack` gained it). Run as a subprocess: tests do not import bench
code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PROBE = """
import json
from bench.capacity_replay import PARTITIONS, _stack_args
from bench.stack import parser
args = vars(_stack_args(2, "/models"))
print(json.dumps({"args": {k: v for k, v in args.items() if isinstance(v, (str, int, bool))},
                  "keys": sorted(args), "stack": sorted(vars(parser().parse_args([]))),
                  "partitions": PARTITIONS}))
"""


def test_replay_stack_args_carry_every_bench_stack_option():
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120,
        check=True,
    )  # fmt: skip
    got = json.loads(out.stdout)
    assert set(got["stack"]) <= set(got["keys"])
    args = got["args"]
    assert args["split_cores"] is False and args["tracing"] == "off"
    assert (args["inference"], args["workers"], args["partitions"], args["model_dir"]) == (
        "local", 2, got["partitions"], "/models"
    )  # fmt: skip
