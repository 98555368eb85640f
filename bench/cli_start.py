"""How long `contactgraph` commands take from start to exit, as a person runs them.

    .venv/bin/python bench/cli_start.py --runs 9

Runs the installed `contactgraph` executable (the one beside this Python):
`--help`, `export --help`, and `keys list --shop demo` against a running
`contactgraph serve` and against a stopped data dir (the command then starts
the embedded database for itself). The commands take turns, round after
round, so a burst of load from elsewhere hits all of them alike. For each:
the median and the minimum wall time, and the median CPU time (user +
system, the command and the processes it waited for), which other
processes' load does not inflate the way it inflates wall time.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402

CONTACTGRAPH = str(Path(sys.executable).with_name("contactgraph"))


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="rounds (default 9)")
    return parser.parse_args()


def environment(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MONGODB_", "CONTACTGRAPH_"))}
    env.update(CONTACTGRAPH_DATA_DIR=str(data_dir), CONTACTGRAPH_PORT=str(harness.free_port()))
    return env


def timed(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run; the command must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [CONTACTGRAPH, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{args} exited {done.returncode}: {done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def rounds(
    commands: dict[str, list[str]], env: dict[str, str], cwd: Path, runs: int
) -> dict[str, dict[str, Any]]:
    walls: dict[str, list[float]] = {name: [] for name in commands}
    cpus: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs + 1):  # the first round warms the file cache and is dropped
        for name, args in commands.items():
            wall, cpu = timed(args, env, cwd)
            walls[name].append(wall)
            cpus[name].append(cpu)
    return {
        name: {
            "runs": runs,
            "wall_median_s": round(statistics.median(walls[name][1:]), 3),
            "wall_min_s": round(min(walls[name][1:]), 3),
            "cpu_median_s": round(statistics.median(cpus[name][1:]), 3),
        }
        for name in commands
    }


class Serve:
    """`contactgraph serve` on the data dir, until stopped."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.process = subprocess.Popen(
            [CONTACTGRAPH, "serve"],
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.process.stdout is not None
        deadline = time.monotonic() + 90
        for line in self.process.stdout:
            if line.startswith("Playground:"):
                break
            if time.monotonic() > deadline:
                break
        else:
            raise RuntimeError("serve ended before it was ready")

    def stop(self) -> None:
        self.process.terminate()
        self.process.communicate(timeout=60)


def main() -> None:
    args = arguments()
    result: dict[str, Any] = {"machine": harness.machine(), "command": sys.argv}
    with tempfile.TemporaryDirectory(prefix="cli-start-") as folder:
        cwd = Path(folder)
        env = environment(cwd / "cg")
        harness.log("--help and export --help ...")
        result["no_database"] = rounds(
            {"--help": ["--help"], "export --help": ["export", "--help"]}, env, cwd, args.runs
        )
        harness.log("keys list against a running serve ...")
        serve = Serve(env, cwd)
        try:
            running = rounds(
                {"keys list (serve running)": ["keys", "list", "--shop", "demo"]},
                env,
                cwd,
                args.runs,
            )
        finally:
            serve.stop()
        harness.log("keys list on a stopped data dir ...")
        stopped = rounds(
            {"keys list (data dir, serve stopped)": ["keys", "list", "--shop", "demo"]},
            env,
            cwd,
            args.runs,
        )
        result["database"] = {**running, **stopped}
    result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    harness.emit(result)


if __name__ == "__main__":
    main()
