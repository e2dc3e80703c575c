"""The Python side of `benchmarks/gpu_suite.sh`: the machine it ran on, then one JSON and one table.

The suite runs three benchmarks, each in its own process with its own --json; a device
run returns only a few files, so this merges them with each step's status and wall time:

  python benchmarks/gpu_suite.py environment WORK   versions and devices -> WORK/environment.json;
                                                   fails where the NVIDIA driver lists a GPU
                                                   that JAX cannot use (it would time the CPU)
  python benchmarks/gpu_suite.py summary WORK OUT   WORK/*.json and WORK/steps.tsv ->
                                                   OUT/gpu_suite.json, and the table, printed
                                                   and in OUT/gpu_suite.txt
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
from typing import Iterator, List, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Each step's name in steps.tsv is the stem of the JSON it writes in WORK.
STEPS = ("train_step", "time_to_quality", "decoding")


def environment(work: str) -> None:
    """Writes what the figures depend on: the libraries' versions and the devices JAX uses."""
    from importlib.metadata import version

    import jax

    from components.minigpt.training import check_gpus_usable

    check_gpus_usable()
    devices = jax.devices()
    env = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        **{name: version(name) for name in ("jax", "jaxlib", "keras", "keras-hub", "numpy")},
        "devices": [f"{d.platform}:{d.device_kind}" for d in devices],
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    with open(os.path.join(work, "environment.json"), "w", encoding="utf-8") as f:
        json.dump(env, f, indent=2)
    print(" ".join(f"{key} {value}" for key, value in env.items()), flush=True)


def read_steps(work: str) -> dict:
    """steps.tsv: one `name<TAB>status<TAB>seconds` line per step the shell script ran."""
    steps = {}
    with open(os.path.join(work, "steps.tsv"), encoding="utf-8") as f:
        for line in f:
            name, status, seconds = line.rstrip("\n").split("\t")
            steps[name] = {"status": status, "wall_s": int(seconds)}
    return steps


def train_step_rows(r: dict) -> Iterator[Tuple[str, str]]:
    for name, v in r["variants"].items():
        yield (
            f"{name} ({v['settings']['precision']})",
            f"{v['ms_per_step']:.2f} ms/step, {v['tokens_per_s']:,.0f} tokens/s, "
            f"{v['peak_fraction']:.0%} of matmul peak, loss {v['loss']:.3f}",
        )


def time_to_quality_rows(r: dict) -> Iterator[Tuple[str, str]]:
    for name, recipe in r.items():
        if isinstance(recipe, dict) and recipe.get("seconds"):  # the recipes, not the run's settings
            ppl, seconds = recipe["val_perplexity"], recipe["seconds"]
            best = min(range(len(ppl)), key=ppl.__getitem__)
            yield (
                name,
                f"val ppl {ppl[-1]:.1f} after epoch {len(ppl)} in {seconds[-1]:.1f} s "
                f"(best {ppl[best]:.1f}, epoch {best + 1}, {seconds[best]:.1f} s)",
            )


def decoding_rows(r: dict) -> Iterator[Tuple[str, str]]:
    for row in r["results"]:
        yield (
            f"{row['decoder']}, batch {row['batch_size']}",
            f"{row['ours_tokens_per_s']:,.0f} tok/s (compile {row['ours_compile_s']:.1f} s), "
            f"{row['ratio']:.2f}x keras-hub's {row['keras_hub_tokens_per_s']:,.0f} tok/s",
        )


ROWS = {"train_step": train_step_rows, "time_to_quality": time_to_quality_rows, "decoding": decoding_rows}


def summary(work: str, out: str) -> None:
    """Merges the steps' JSONs into OUT/gpu_suite.json and prints the table (OUT/gpu_suite.txt too)."""
    merged = {"steps": read_steps(work)}
    for stem in ("environment",) + STEPS:
        path = os.path.join(work, stem + ".json")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                merged[stem] = json.load(f)
    env = merged.get("environment", {})
    lines: List[str] = [
        f"GPU suite {env.get('date', '?')}: {', '.join(env.get('devices', ['?']))}, jax {env.get('jax', '?')}, "
        f"keras {env.get('keras', '?')}, keras-hub {env.get('keras-hub', '?')}, Python {env.get('python', '?')}",
        "",
        f"{'step':<17}{'status':<14}{'wall s':>7}",
        *(f"{name:<17}{s['status']:<14}{s['wall_s']:>7}" for name, s in merged["steps"].items()),
        "",
        f"{'benchmark':<17}{'what':<24}figure",
    ]
    for stem in (stem for stem in STEPS if stem in merged):  # a failed step wrote no JSON
        lines += [f"{stem:<17}{what:<24}{figure}" for what, figure in ROWS[stem](merged[stem])]
    table = "\n".join(lines)
    print(table)
    with open(os.path.join(out, "gpu_suite.txt"), "w", encoding="utf-8") as f:
        f.write(table + "\n")
    with open(os.path.join(out, "gpu_suite.json"), "w", encoding="utf-8") as f:
        json.dump(merged, f, indent=2)


if __name__ == "__main__":
    if sys.argv[1:2] == ["environment"] and len(sys.argv) == 3:
        environment(sys.argv[2])
    elif sys.argv[1:2] == ["summary"] and len(sys.argv) == 4:
        summary(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
