"""TensorRT engine plans from exported ONNX graphs, where NVIDIA's ``trtexec`` exists.

Plans are specific to one GPU model and TensorRT version, so they are built on the GPU
node that serves them (or by ONNX Runtime's TensorRT execution provider at load time,
with its engine cache); this step only pre-builds them when the tool is at hand.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)

# min/opt/max shapes for the dynamic axes: batch up to 256 sentences of 256 tokens.
PROFILES = {
    "encoder": "embeds:{b}x{t}x256,attention_mask:{b}x{t}",
}


def build_plans(folder: Path, precision: str = "fp16") -> list[Path]:
    trtexec = shutil.which("trtexec")
    if not trtexec:
        print(
            "TensorRT: skipping plan build - `trtexec` is not on PATH (no TensorRT on this "
            "machine). The fp16 ONNX graphs still run on GPU nodes through ONNX Runtime's "
            "CUDA or TensorRT execution provider."
        )
        return []
    built = []
    for part in ("encoder", "decoder"):
        onnx_file = folder / f"{part}.fp32.onnx"
        plan = folder / f"{part}.{precision}.plan"
        cmd = [trtexec, f"--onnx={onnx_file}", f"--saveEngine={plan}"]
        if precision == "fp16":
            cmd.append("--fp16")
        elif precision == "int8":
            cmd.append("--int8")
        if part in PROFILES:
            shape = PROFILES[part]
            cmd += [
                "--minShapes=" + shape.format(b=1, t=1),
                "--optShapes=" + shape.format(b=64, t=32),
                "--maxShapes=" + shape.format(b=256, t=256),
            ]
        log.info("building %s", plan)
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"trtexec failed for {onnx_file}:\n{result.stdout[-2000:]}")
        built.append(plan)
    return built
