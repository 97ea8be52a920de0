"""Training-step time and peak memory of data2vec vs data2vec-aqc at the same model and batch.

Arms (one objective each, same seed, same weights, same batch):

* ``data2vec``: :class:`~d2v_speech.ssl.data2vec.Data2VecObjective`;
* ``aqc``: :class:`~d2v_speech.ssl.aqc.AQCObjective` (default cluster scaling);
* ``aqc_official``: the same with ``official_cluster_scaling=True``;
* ``data2vec2``: :class:`~d2v_speech.ssl.data2vec2.Data2Vec2Objective`, the data2vec 2.0 engine
  (the same encoder with ALiBi, M = 8 block-masked clones, sparse student, conv decoder);
* ``aqc2``: :class:`~d2v_speech.ssl.aqc2.AQC2Objective`, data2vec-aqc on that engine.

Besides CPU seconds per update, the summary reports what an update buys: unique audio seconds
per CPU-second (the batch's audio; the clones do not add any) and masked-frame predictions per
CPU-second (frames the loss regresses, over all clones), the learning signal that data2vec 2.0
multiplies.

A step is forward + backward + optimiser step (AdamW) + ``after_optimizer_step`` (EMA teacher and
Gumbel temperature), as in the pretraining Brain. The aqc arms get a pre-made augmented copy of the
batch: augmentation runs in the data-loader workers, not in the step, so it is not timed here
(see ``benchmarks/augment_throughput.py``). Every step draws a fresh span mask; no layer is
dropped (LayerDrop would make step times depend on random draws).

Step time: the arms run round-robin in one process (warm-up steps first), so machine noise hits
them alike; the median of the timed steps is reported. Peak memory: each arm runs in a fresh
subprocess; on CPU the peak resident-set growth during the steps (the kernel's peak-RSS mark is
reset after the model is built, then peak RSS after the steps minus RSS before them: activations,
gradients, optimiser state and temporaries), on CUDA ``torch.cuda.max_memory_allocated``.

    python benchmarks/pretrain_step.py --model tiny --batch 8 --seconds 4 --steps 5 --threads 1
    python benchmarks/pretrain_step.py --model base --batch 4 --seconds 4 --steps 3 --profile
    python benchmarks/pretrain_step.py --arms data2vec aqc --compile --precision bf16 --no-memory

Efficiency: the FLOPs of one step of each arm (``torch.utils.flop_counter``: products,
convolutions, attention; forward and backward) over its median CPU seconds give GFLOP/s, reported
as a percentage of the best ``torch.mm`` rate this CPU reaches at the model's own layer shapes
and the run's precision (measured in the same process, 1 thread). ``--compile`` adds, for every
arm, the same arm with its Transformer layers (student and teacher) compiled by inductor
(``d2v_speech.nn.compiled``; compiled during the warm-up, whose time is reported).

Results merge into ``benchmarks/results/pretrain_step.json`` (one entry per setting and ``--tag``)
and the markdown table ``benchmarks/results/pretrain_step.md`` is rewritten from it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

import d2v_speech.ssl.negative_sampler as negative_sampler_module
from d2v_speech.benchmarking.flops import count_flops, gemm_peak_gflops, model_gemm_shapes
from d2v_speech.heap import keep_freed_blocks_in_heap
from d2v_speech.nn.compiled import compile_transformer_layers
from d2v_speech.nn.conv_decoder import ConvDecoder1d
from d2v_speech.nn.data2vec_audio import Data2VecAudioModel
from d2v_speech.nn.presets import load_model_config
from d2v_speech.ssl.aqc import AQCObjective
from d2v_speech.ssl.aqc2 import AQC2Objective
from d2v_speech.ssl.block_masker import BlockMasker
from d2v_speech.ssl.cluster_scaler import ClusterScaler
from d2v_speech.ssl.cross_contrastive import CrossContrastiveHead
from d2v_speech.ssl.data2vec import Data2VecObjective
from d2v_speech.ssl.data2vec2 import Data2Vec2Objective
from d2v_speech.ssl.ema import EMATeacherSettings
from d2v_speech.ssl.negative_sampler import NegativeSampler
from d2v_speech.ssl.quantizer_settings import QuantizerSettings
from d2v_speech.ssl.target_builder import TopKTargetBuilder

RESULTS = Path(__file__).resolve().parent / "results"
SAMPLE_RATE = 16000
ARMS = ("data2vec", "aqc", "aqc_official", "data2vec2", "aqc2")
V2_ARMS = ("data2vec2", "aqc2")
AUGMENTED_ARMS = ("aqc", "aqc_official", "aqc2")
COMPILED = "+compiled"
HEAP_MODES = ("keep", "glibc")  # see --heap
# profiler ops that are matrix products (their time counts as GEMM time)
GEMM_OPS = frozenset(
    {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::linear", "aten::matmul",
     "aten::_scaled_dot_product_flash_attention_for_cpu",
     "aten::_scaled_dot_product_flash_attention_for_cpu_backward", "aten::convolution_backward",
     "aten::mkldnn_convolution", "aten::_convolution"}
)  # fmt: skip
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# teacher layers averaged into targets, as in the recipes (tiny: hparams/tiny/*.yaml)
TOP_K_LAYERS = {"tiny": 2, "base": 8, "large": 8}
# the 2.0 decoder width, as in hparams/{tiny/,}data2vec2.yaml (Large: fairseq's 768)
DECODER_DIM = {"tiny": 128, "base": 384, "large": 768}
# objective methods and functions timed as named regions in --profile
PROFILED_REGIONS = (
    "frontend",
    "student_encode",
    "teacher_targets",
    "regression_terms",
    "quantize_masked",
    "same_cluster_negatives",
    "contrastive",
    "student_predictions",
    "contrastive_terms",
)


@dataclass
class Arm:
    """One objective with its optimiser and update counter."""

    name: str
    objective: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    updates: int = 0


def build_v2_objective(name: str, args: argparse.Namespace) -> torch.nn.Module:
    """data2vec2 / aqc2 with the settings of hparams/data2vec2.yaml and hparams/aqc2.yaml."""
    torch.manual_seed(args.seed)
    config = load_model_config(args.model, alibi=True)
    engine = {
        "model": Data2VecAudioModel(config),
        "masker": BlockMasker(num_clones=args.clones),
        "teacher": EMATeacherSettings(0.999, 0.99999, 75000, copy_patterns=()),
        "target_builder": TopKTargetBuilder(top_k=TOP_K_LAYERS.get(args.model, config.num_layers)),
        "decoder": ConvDecoder1d(config.embed_dim, DECODER_DIM.get(args.model, 384)),
    }
    if name == "data2vec2":
        return Data2Vec2Objective(**engine)
    return AQC2Objective(
        **engine,
        quantizer=QuantizerSettings(gumbel_noise="uniform"),
        negative_sampler=NegativeSampler(),
        cluster_scaler=ClusterScaler(),
        contrastive_head=CrossContrastiveHead(),
        contrastive_clones=1,
        feature_penalty_weight=10.0,
    )


def build_arm(name: str, args: argparse.Namespace, device: torch.device) -> Arm:
    """The objective of ``name`` around a freshly seeded model (identical across arms);
    ``<arm>+compiled`` is that arm with its Transformer layers compiled."""
    if name.endswith(COMPILED):
        arm = build_arm(name.removesuffix(COMPILED), args, device)
        arm.name = name
        compile_transformer_layers([arm.objective, arm.objective.teacher.model])
        return arm
    torch.manual_seed(args.seed)
    config = load_model_config(args.model)
    model = Data2VecAudioModel(config)
    targets = TopKTargetBuilder(top_k=TOP_K_LAYERS.get(args.model, config.num_layers))
    if name in V2_ARMS:
        objective = build_v2_objective(name, args)
    elif name == "data2vec":
        objective = Data2VecObjective(model, target_builder=targets)
    else:
        scaler = ClusterScaler(official_cluster_scaling=name == "aqc_official")
        objective = AQCObjective(
            model, target_builder=targets, cluster_scaler=scaler, feature_penalty_weight=10.0
        )
    objective.to(device).train()
    optimizer = torch.optim.AdamW(objective.parameters(), lr=1e-5, betas=(0.9, 0.98), eps=1e-6)
    scaler = torch.amp.GradScaler(device.type) if args.precision == "fp16" else None
    return Arm(name, objective, optimizer, scaler)


def make_batch(args: argparse.Namespace, device: torch.device) -> dict[str, torch.Tensor]:
    """Speech-like clean waveforms (B, S) and an augmented copy (noise + a short echo)."""
    generator = torch.Generator().manual_seed(args.seed + 1)
    samples = int(args.seconds * SAMPLE_RATE)
    time_axis = torch.arange(samples) / SAMPLE_RATE
    pitch = 100 + 150 * torch.rand(args.batch, 1, generator=generator)
    envelope = 0.5 + 0.5 * torch.sin(2 * torch.pi * 3 * time_axis)
    wav = envelope * torch.sin(2 * torch.pi * pitch * time_axis)
    wav = wav + 0.1 * torch.randn(args.batch, samples, generator=generator)
    aug = wav + 0.3 * torch.randn(args.batch, samples, generator=generator)
    aug[:, 800:] += 0.4 * wav[:, :-800]

    def normalise(x):
        return (x - x.mean(dim=1, keepdim=True)) / x.std(dim=1, keepdim=True)

    lengths = torch.full((args.batch,), samples, dtype=torch.long)
    return {
        "wav": normalise(wav).to(device),
        "wav_aug": normalise(aug).to(device),
        "lengths": lengths.to(device),
    }


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_step(
    arm: Arm, batch: dict, args: argparse.Namespace, device: torch.device
) -> tuple[float, float]:
    """One full update of ``arm``; returns its (wall-clock, process CPU) seconds and the number
    of masked frames its loss predicted."""
    num_layers = arm.objective.model.config.num_layers
    layer_keep = torch.ones(num_layers, dtype=torch.bool)
    views = (
        {"wav_aug": batch["wav_aug"]} if arm.name.removesuffix(COMPILED) in AUGMENTED_ARMS else {}
    )
    dtype = PRECISIONS[args.precision]
    synchronize(device)
    start, start_cpu = time.perf_counter(), time.process_time()
    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        out = arm.objective(batch["wav"], batch["lengths"], layer_keep=layer_keep, **views)
    loss = out["loss"]
    if arm.scaler is not None:
        arm.scaler.scale(loss).backward()
        arm.scaler.step(arm.optimizer)
        arm.scaler.update()
    else:
        loss.backward()
        arm.optimizer.step()
    arm.optimizer.zero_grad(set_to_none=True)
    arm.updates += 1
    arm.objective.after_optimizer_step(arm.updates)
    synchronize(device)
    return time.perf_counter() - start, time.process_time() - start_cpu, int(out["num_masked"])


def time_arms(arms: list[Arm], batch: dict, args, device) -> dict[str, dict[str, list[float]]]:
    """Round-robin: warm-up steps, then ``args.steps`` timed steps per arm, rotating the order.

    Returns per arm the wall and the process CPU seconds of each timed step.
    """
    for _ in range(args.warmup):
        for arm in arms:
            train_step(arm, batch, args, device)
    times = {arm.name: {"wall": [], "cpu": [], "predictions": []} for arm in arms}
    for step in range(args.steps):
        # rotate so that no arm always runs right after the same neighbour
        order = arms[step % len(arms) :] + arms[: step % len(arms)]
        for arm in order:
            wall, cpu, predictions = train_step(arm, batch, args, device)
            times[arm.name]["wall"].append(wall)
            times[arm.name]["cpu"].append(cpu)
            times[arm.name]["predictions"].append(predictions)
            print(f"step {step} {arm.name}: {wall:.3f} s wall, {cpu:.3f} s CPU", flush=True)
    return times


def resident_mib(field: str) -> float:
    """``VmRSS`` (current) or ``VmHWM`` (peak) of this process from /proc, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not found in /proc/self/status")


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux >= 4.0); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def probe_memory(args: argparse.Namespace) -> dict[str, float]:
    """Run in a fresh process: peak memory of ``args.memory_probe``'s training steps (MiB)."""
    device = torch.device(args.device)
    arm = build_arm(args.memory_probe, args, device)
    batch = make_batch(args, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    # without the reset, the peak so far (imports, model build) may hide the steps' peak
    peak_was_reset = reset_peak_rss()
    before = resident_mib("VmRSS") if peak_was_reset else resident_mib("VmHWM")
    for _ in range(args.memory_steps):
        train_step(arm, batch, args, device)
    result = {
        "rss_before_steps_mib": before,
        "peak_rss_growth_mib": resident_mib("VmHWM") - before,
        "peak_reset": float(peak_was_reset),
        "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if device.type == "cuda":
        result["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return result


def memory_in_subprocess(arm_name: str, args: argparse.Namespace) -> dict[str, float]:
    """Launch this script with ``--memory-probe arm_name`` and read its JSON answer."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--memory-probe",
        arm_name,
        *setting_arguments(args),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"memory probe {arm_name} failed:\n{completed.stderr[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def setting_arguments(args: argparse.Namespace) -> list[str]:
    return [
        f"--model={args.model}",
        f"--batch={args.batch}",
        f"--seconds={args.seconds}",
        f"--threads={args.threads}",
        f"--device={args.device}",
        f"--precision={args.precision}",
        f"--seed={args.seed}",
        f"--memory-steps={args.memory_steps}",
        f"--heap={args.heap}",
    ]


@contextlib.contextmanager
def named_regions(objective: torch.nn.Module):
    """Wrap the objective's step methods (and the negative sampler) in profiler record_functions."""
    originals = {}
    for name in PROFILED_REGIONS:
        method = getattr(objective, name, None)
        if method is None:
            continue
        originals[name] = method

        def wrapped(*a, _method=method, _name=name, **k):
            with torch.profiler.record_function(f"## {_name}"):
                return _method(*a, **k)

        setattr(objective, name, wrapped)
    sampler = negative_sampler_module.sample_negatives

    def sample_negatives(*a, **k):
        with torch.profiler.record_function("## sample_negatives"):
            return sampler(*a, **k)

    negative_sampler_module.sample_negatives = sample_negatives
    try:
        yield
    finally:
        negative_sampler_module.sample_negatives = sampler
        for name in originals:
            delattr(objective, name)


def profile_arm(arm: Arm, batch: dict, args, device, steps: int = 2) -> dict:
    """torch.profiler over ``steps`` updates: named forward regions and the top ops by self time."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with named_regions(arm.objective), torch.profiler.profile(activities=activities) as prof:
        for _ in range(steps):
            train_step(arm, batch, args, device)
    events = prof.key_averages()
    time_key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    regions = {e.key[3:]: e.cpu_time_total / 1e6 / steps for e in events if e.key.startswith("## ")}
    ops = sorted(
        (e for e in events if not e.key.startswith("## ")),
        key=lambda e: getattr(e, time_key),
        reverse=True,
    )
    top = [
        {"op": e.key, "self_s_per_step": getattr(e, time_key) / 1e6 / steps, "calls": e.count}
        for e in ops[:12]
    ]
    # the share of the step's op time in matrix products: the rest (element-wise ops, norms,
    # dropout draws, gathers, copies) runs far below the GEMM peak and caps the step's MFU
    total = sum(getattr(e, time_key) for e in ops)
    gemm = sum(getattr(e, time_key) for e in ops if e.key in GEMM_OPS)
    return {"forward_regions_s_per_step": regions, "top_ops": top, "gemm_share": gemm / total}


def summarise(times: dict[str, dict[str, list[float]]], audio_seconds: float) -> dict[str, dict]:
    """Median, min, max of wall and CPU seconds per arm and their ratios to the data2vec arm;
    unique audio seconds and masked-frame predictions per CPU-second."""
    reference = {kind: statistics.median(times["data2vec"][kind]) for kind in ("wall", "cpu")}
    summary = {}
    for name, kinds in times.items():
        cpu_median = statistics.median(kinds["cpu"])
        predictions = statistics.median(kinds["predictions"])
        summary[name] = {
            "predictions_per_step": predictions,
            "predictions_per_cpu_s": predictions / cpu_median,
            "audio_s_per_cpu_s": audio_seconds / cpu_median,
        }
        for kind in ("wall", "cpu"):
            values = kinds[kind]
            median = statistics.median(values)
            summary[name][kind] = {
                "median_s": median,
                "min_s": min(values),
                "max_s": max(values),
                "steps": values,
                "ratio_to_data2vec": median / reference[kind],
            }
    return summary


def compile_first_steps(arms: list[Arm], batch: dict, args, device) -> dict[str, float]:
    """Wall seconds of the first step of each compiled arm (inductor compiles there)."""
    return {
        arm.name: train_step(arm, batch, args, device)[0]
        for arm in arms
        if arm.name.endswith(COMPILED)
    }


def efficiency(arms: list[Arm], batch: dict, args, device, summary: dict) -> dict:
    """GFLOP per step (eager count; a compiled arm does the same products), GFLOP/s at the
    median CPU seconds, and the percentage of the GEMM peak measured at the model's shapes."""
    flops = {}
    for arm in arms:
        if not arm.name.endswith(COMPILED):
            flops[arm.name] = count_flops(lambda arm=arm: train_step(arm, batch, args, device))
    config = arms[0].objective.model.config
    samples = torch.tensor([int(args.seconds * SAMPLE_RATE)])
    frames = int(arms[0].objective.model.frame_lengths(samples)[0])
    dtype = PRECISIONS[args.precision] or torch.float32
    shapes = model_gemm_shapes(args.batch * frames, config.embed_dim, config.ffn_dim)
    gemm = gemm_peak_gflops(shapes, dtype) if device.type == "cpu" else {}
    result = {"gemm_gflops": gemm, "arms": {}}
    for arm in arms:
        gflop = flops[arm.name.removesuffix(COMPILED)] / 1e9
        gflops = gflop / summary[arm.name]["cpu"]["median_s"]
        entry = {"gflop_per_step": gflop, "gflops": gflops}
        if gemm:
            entry["percent_of_gemm_peak"] = 100.0 * gflops / gemm["peak_gflops"]
        result["arms"][arm.name] = entry
    return result


def setting_key(args: argparse.Namespace) -> str:
    # runs before the --heap option (glibc's heap) keep their keys
    heap = "" if args.heap == "glibc" else f"|heap={args.heap}"
    return (
        f"{args.tag}|{args.model}|{args.batch}x{args.seconds:g}s|{args.device}|"
        f"{args.precision}|{args.threads}thr{heap}"
    )


def write_results(key: str, entry: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    json_path = RESULTS / "pretrain_step.json"
    everything = json.loads(json_path.read_text()) if json_path.exists() else {}
    everything[key] = entry
    json_path.write_text(json.dumps(everything, indent=2, sort_keys=True) + "\n")
    (RESULTS / "pretrain_step.md").write_text(markdown(everything))


def _median_range(stats: dict) -> str:
    return f"{stats['median_s']:.3f} ({stats['min_s']:.3f}-{stats['max_s']:.3f})"


def summary_by_setting(everything: dict) -> list[str]:
    """One row per setting and tag: median CPU seconds per arm and the aqc / data2vec ratios."""
    lines = [
        "",
        "## Summary (median CPU seconds per step; ratio to data2vec in brackets)",
        "",
        "| model | batch | threads | tag | " + " | ".join(ARMS) + " |",
        "|---|---|---|---|" + "---|" * len(ARMS),
    ]
    for key in sorted(everything, key=lambda k: (k.split("|", 1)[1], k)):
        setting, arms = everything[key]["setting"], everything[key]["arms"]
        cells = []
        for arm in ARMS:
            cpu = arms.get(arm, {}).get("cpu")
            cells.append(
                "-" if cpu is None else f"{cpu['median_s']:.2f} (x{cpu['ratio_to_data2vec']:.2f})"
            )
        lines.append(
            f"| {setting['model']} | {setting['batch']} x {setting['seconds']:g} s | "
            f"{setting['threads']} | {setting['tag']} | " + " | ".join(cells) + " |"
        )
    return lines


def learning_per_cpu_second(everything: dict) -> list[str]:
    """Rows of the 2.0 comparison: audio and predictions per CPU-second, engine ratios."""
    lines = [
        "",
        "## Learning per CPU-second (data2vec 2.0 engine vs 1.0, same model and batch)",
        "",
        "Unique audio s / CPU s and masked-frame predictions / CPU s per arm; `2.0 gain` is the "
        "ratio of predictions per CPU-second (data2vec2 / data2vec, aqc2 / aqc); `aqc cost` is "
        "the CPU time of an aqc step over its engine's (aqc / data2vec, aqc2 / data2vec2).",
        "",
        "| model | batch | precision | threads | tag | clones | arm | CPU s/step | audio s/CPU s "
        "| predictions/step | predictions/CPU s | 2.0 gain | aqc cost |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    partner = {"data2vec2": "data2vec", "aqc2": "aqc"}
    engine = {"aqc": "data2vec", "aqc2": "data2vec2"}
    for key in sorted(everything):
        setting, arms = everything[key]["setting"], everything[key]["arms"]
        if not any(arm in arms for arm in V2_ARMS):
            continue
        for name, stats in arms.items():
            if "predictions_per_cpu_s" not in stats:
                continue
            gain = cost = "-"
            if partner.get(name) in arms:
                base = arms[partner[name]]["predictions_per_cpu_s"]
                gain = f"x{stats['predictions_per_cpu_s'] / base:.2f}"
            if engine.get(name) in arms:
                cost = f"x{stats['cpu']['median_s'] / arms[engine[name]]['cpu']['median_s']:.2f}"
            lines.append(
                f"| {setting['model']} | {setting['batch']} x {setting['seconds']:g} s | "
                f"{setting['precision']} | {setting['threads']} | {setting['tag']} | "
                f"{setting.get('clones', '-') if name in V2_ARMS else '-'} | {name} | "
                f"{stats['cpu']['median_s']:.3f} | {stats['audio_s_per_cpu_s']:.2f} | "
                f"{stats['predictions_per_step']:.0f} | {stats['predictions_per_cpu_s']:.0f} | "
                f"{gain} | {cost} |"
            )
    return lines


def efficiency_table(everything: dict) -> list[str]:
    """Rows: GFLOP per step, GFLOP/s and % of the measured GEMM peak, eager and compiled."""
    lines = [
        "",
        "## Efficiency (GFLOP/s at the median CPU seconds; % of this CPU's measured GEMM peak)",
        "",
        "The peak is the best `torch.mm` rate at the model's layer shapes and the run's "
        "precision, 1 thread, measured in the same process. `+compiled`: Transformer layers "
        "compiled by inductor; its first step (compilation) is reported, not timed.",
        "",
        "| tag | model | batch | precision | GEMM peak GFLOP/s | arm | GFLOP/step | CPU s/step "
        "| GFLOP/s | % of peak | first step s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key in sorted(everything):
        entry = everything[key]
        setting, found = entry["setting"], entry.get("efficiency")
        if not found:
            continue
        peak = found["gemm_gflops"].get("peak_gflops")
        first = found.get("compile_and_first_step_wall_s", {})
        for arm, stats in found["arms"].items():
            percent = stats.get("percent_of_gemm_peak")
            cells = [
                setting["tag"], setting["model"], f"{setting['batch']} x {setting['seconds']:g} s",
                setting["precision"], "-" if peak is None else f"{peak:.1f}", arm,
                f"{stats['gflop_per_step']:.1f}", f"{entry['arms'][arm]['cpu']['median_s']:.3f}",
                f"{stats['gflops']:.1f}", "-" if percent is None else f"{percent:.0f}",
                f"{first[arm]:.0f}" if arm in first else "-",
            ]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown(everything: dict) -> str:
    lines = [
        "# Pretraining step: data2vec vs data2vec-aqc (same model, same batch)",
        "",
        "Step = forward + backward + AdamW step + EMA/temperature update, no layer dropped. "
        "Medians of the timed steps after warm-up, arms interleaved round-robin in one process: "
        "wall seconds and process CPU seconds (on a shared machine, CPU seconds of a 1-thread "
        "run are the steadier measure; wall time also counts waiting for a core). The aqc arms "
        "get a pre-made augmented batch (augmentation runs in loader workers, not in the step). "
        "Memory: each arm in a fresh subprocess; CPU = peak RSS growth during the steps "
        "(activations, gradients, optimiser state), CUDA = max allocated. Heap: `keep` = freed "
        "blocks stay in glibc's heap (`d2v_speech.heap.keep_freed_blocks_in_heap`, the "
        "pretraining YAMLs' `heap_keep_large_blocks`), `glibc` = its own mmap threshold, which "
        "maps every block above 32 MiB anew (page faults each step).",
        "",
        "| tag | model | batch | device | precision | threads | heap | arm | wall s (min-max) "
        "| x data2vec | CPU s (min-max) | x data2vec | peak mem MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key in sorted(everything):
        entry = everything[key]
        setting = entry["setting"]
        for arm, stats in entry["arms"].items():
            memory = entry.get("memory", {}).get(arm, {})
            peak = memory.get("cuda_max_allocated_mib", memory.get("peak_rss_growth_mib"))
            wall, cpu = stats["wall"], stats["cpu"]
            lines.append(
                f"| {setting['tag']} | {setting['model']} | {setting['batch']} x "
                f"{setting['seconds']:g} s | {setting['device']} | {setting['precision']} | "
                f"{setting['threads']} | {setting.get('heap', 'glibc')} | {arm} | "
                f"{_median_range(wall)} | "
                f"{wall['ratio_to_data2vec']:.2f} | {_median_range(cpu)} | "
                f"{cpu['ratio_to_data2vec']:.2f} | {'-' if peak is None else f'{peak:.0f}'} |"
            )
    lines += summary_by_setting(everything)
    lines += learning_per_cpu_second(everything)
    lines += efficiency_table(everything)
    for key in sorted(everything):
        profile = everything[key].get("profile")
        if not profile:
            continue
        lines += ["", f"## Profile: {key}", ""]
        for arm, result in profile.items():
            regions = ", ".join(
                f"{name} {seconds:.3f}"
                for name, seconds in sorted(
                    result["forward_regions_s_per_step"].items(), key=lambda item: -item[1]
                )
            )
            lines += [f"**{arm}** forward regions (s/step, inclusive): {regions}", ""]
            if "gemm_share" in result:
                lines += [
                    f"Matrix products: {100 * result['gemm_share']:.0f} % of the step's op time "
                    "(self time of mm, addmm, bmm, attention and convolution kernels).",
                    "",
                ]
            lines += ["| op | self s/step | calls |", "|---|---|---|"]
            lines += [
                f"| {op['op']} | {op['self_s_per_step']:.3f} | {op['calls']} |"
                for op in result["top_ops"]
            ]
            lines.append("")
    notes = [e["setting"].get("note") for e in everything.values() if e["setting"].get("note")]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in sorted(set(notes))]
    return "\n".join(lines).rstrip() + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny", help="preset name (tiny, base, large) or path")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per arm")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per arm first")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--precision", default="fp32", choices=tuple(PRECISIONS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clones", type=int, default=8, help="masked clones of the 2.0 arms")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument("--memory-steps", type=int, default=2, help="steps per memory probe")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument("--profile", action="store_true", help="torch.profiler of every arm")
    parser.add_argument(
        "--heap",
        default="keep",
        choices=HEAP_MODES,
        help="keep: freed blocks stay in glibc's heap, as the pretraining YAMLs' "
        "heap_keep_large_blocks does; glibc: its own mmap threshold (large blocks mapped anew)",
    )
    parser.add_argument("--tag", default="current", help="label of this run in the results")
    parser.add_argument("--note", default="", help="free text stored with the results")
    parser.add_argument("--memory-probe", choices=ARMS, help=argparse.SUPPRESS)
    parser.add_argument(
        "--compile", action="store_true", help="also each arm with compiled Transformer layers"
    )
    args = parser.parse_args(argv)
    if min(args.batch, args.steps, args.threads, args.memory_steps) < 1 or args.seconds <= 0:
        parser.error("--batch, --steps, --threads, --memory-steps and --seconds must be positive")
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    if "data2vec" not in args.arms:
        parser.error("the data2vec arm is the reference of the ratios; keep it in --arms")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda requested but CUDA is not available")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.heap == "keep":
        keep_freed_blocks_in_heap()
    if args.memory_probe:
        print(json.dumps(probe_memory(args)))
        return
    device = torch.device(args.device)
    names = list(args.arms) + ([name + COMPILED for name in args.arms] if args.compile else [])
    arms = [build_arm(name, args, device) for name in names]
    batch = make_batch(args, device)
    first_steps = compile_first_steps(arms, batch, args, device)
    times = time_arms(arms, batch, args, device)
    entry = {
        "setting": {
            "tag": args.tag,
            "model": args.model,
            "batch": args.batch,
            "seconds": args.seconds,
            "device": args.device,
            "precision": args.precision,
            "threads": args.threads,
            "heap": args.heap,
            "clones": args.clones,
            "warmup": args.warmup,
            "timed_steps": args.steps,
            "note": args.note,
            "torch": torch.__version__,
            "machine": platform.processor() or platform.machine(),
            "augmentation": "pre-made; runs in loader workers, not timed",
        },
        "arms": summarise(times, args.batch * args.seconds),
    }
    entry["efficiency"] = efficiency(arms, batch, args, device, entry["arms"])
    if first_steps:
        entry["efficiency"]["compile_and_first_step_wall_s"] = first_steps
    if args.profile:
        entry["profile"] = {arm.name: profile_arm(arm, batch, args, device) for arm in arms}
    if not args.no_memory:
        del arms
        entry["memory"] = {name: memory_in_subprocess(name, args) for name in args.arms}
    write_results(setting_key(args), entry)
    for name, stats in entry["arms"].items():
        wall, cpu = stats["wall"], stats["cpu"]
        print(
            f"{name}: median {wall['median_s']:.3f} s wall (x{wall['ratio_to_data2vec']:.2f}), "
            f"{cpu['median_s']:.3f} s CPU (x{cpu['ratio_to_data2vec']:.2f})"
        )


if __name__ == "__main__":
    main()
