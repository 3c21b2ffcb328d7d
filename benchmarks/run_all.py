"""Run every CPU benchmark (each writes its RESULTS_<name>.md) and gather them into RESULTS.md.

    .venv/bin/python benchmarks/run_all.py            # run all, then gather
    .venv/bin/python benchmarks/run_all.py --gather   # only gather the latest tables

The gpu_*.py scripts are for a machine with a GPU and are not run here.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ["startup", "inspect", "models", "generate", "load"]


def gather() -> Path:
    parts = ["# Benchmark results", "",
             "Each section is written by `benchmarks/bench_<name>.py`, which measures the app side "
             "by side, in one run, with the tool a user would pick instead, and reports ratios. "
             "`make bench` reruns them all.", ""]
    for name in ORDER:
        path = HERE / f"RESULTS_{name}.md"
        if path.exists():
            text = path.read_text().strip()
            parts += [text.replace("\n# ", "\n## ").replace("# ", "## ", 1), ""]
        else:
            parts += [f"## {name}", "", f"_not measured yet: run `benchmarks/bench_{name}.py`_", ""]
    out = HERE / "RESULTS.md"
    out.write_text("\n".join(parts))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gather", action="store_true", help="only rebuild RESULTS.md")
    args = ap.parse_args()
    failed = []
    if not args.gather:
        for name in ORDER:
            script = HERE / f"bench_{name}.py"
            print(f"== {script.name}", flush=True)
            if subprocess.run([sys.executable, str(script)], cwd=HERE.parent).returncode != 0:
                failed.append(name)
    print(f"wrote {gather()}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
