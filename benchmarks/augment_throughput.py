"""Throughput of WaveformAugmenter: seconds of audio augmented per CPU-second, on 1 thread.

Each configuration augments utterances of a few lengths (one warm-up call first, so one-time
imports and caches are not counted). Folder configurations use generated files: synthetic RIRs
written as wav (0.2-1.0 s) and 10 s coloured-noise wavs in a MUSAN-like layout.

    python benchmarks/augment_throughput.py [--calls 20]

Writes ``benchmarks/results/augment_throughput.{json,md}``.
"""

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from d2v_speech.augment import WaveformAugmenter, synthetic_rir

RESULTS = Path(__file__).resolve().parent / "results"
SR = 16000
LENGTHS_S = (4.0, 15.0)


def write_folders(root: Path) -> tuple[Path, Path]:
    """A folder of 8 RIR wavs and a MUSAN-like folder of 4 noise wavs."""
    rng = np.random.default_rng(0)
    rir_folder = root / "rirs"
    noise_folder = root / "musan" / "noise" / "free-sound"
    rir_folder.mkdir(parents=True)
    noise_folder.mkdir(parents=True)
    for i in range(8):
        rir = synthetic_rir(rng.uniform(0.2, 1.0), rng.uniform(-5, 10), SR, rng)
        sf.write(rir_folder / f"rir-{i}.wav", rir, SR)
    for i in range(4):
        noise = np.cumsum(rng.standard_normal(10 * SR)) * 1e-3
        sf.write(
            noise_folder / f"noise-free-sound-{i:04d}.wav",
            (noise - noise.mean()).astype(np.float32),
            SR,
        )
    return rir_folder, root / "musan" / "noise"


def configurations(rir_folder: Path, noise_folder: Path) -> dict[str, dict]:
    none = {"noise_prob": 0.0, "reverb_prob": 0.0, "background_prob": 0.0}
    return {
        "defaults (p=0.6/0.7/0.8, synthetic RIRs, coloured noise)": {},
        "all stages always (synthetic)": {
            "noise_prob": 1.0,
            "reverb_prob": 1.0,
            "background_prob": 1.0,
        },
        "all stages always (RIR + noise folders)": {
            "noise_prob": 1.0,
            "reverb_prob": 1.0,
            "background_prob": 1.0,
            "rir_folder": rir_folder,
            "noise_folder": noise_folder,
        },
        "gaussian noise only (uniform dB)": {**none, "noise_prob": 1.0},
        "gaussian noise only (fork: uniform amplitude)": {
            **none,
            "noise_prob": 1.0,
            "noise_snr_sampling": "uniform_amplitude",
        },
        "synthetic reverb only": {**none, "reverb_prob": 1.0},
        "RIR-folder reverb only": {**none, "reverb_prob": 1.0, "rir_folder": rir_folder},
        "coloured noise only": {**none, "background_prob": 1.0},
        "noise-folder background only": {
            **none,
            "background_prob": 1.0,
            "noise_folder": noise_folder,
        },
    }


def throughput(augmenter: WaveformAugmenter, length_s: float, calls: int) -> float:
    wav = (0.1 * np.random.default_rng(1).standard_normal(int(length_s * SR))).astype(np.float32)
    augmenter(wav, key=10**6)
    start = time.process_time()
    for key in range(calls):
        augmenter(wav, key=key)
    return calls * length_s / (time.process_time() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rir_folder, noise_folder = write_folders(Path(tmp))
        for name, kwargs in configurations(rir_folder, noise_folder).items():
            augmenter = WaveformAugmenter(sample_rate=SR, seed=0, **kwargs)
            for length_s in LENGTHS_S:
                speed = throughput(augmenter, length_s, args.calls)
                rows.append(
                    {"config": name, "utterance_s": length_s, "audio_s_per_cpu_s": round(speed, 1)}
                )
                print(rows[-1], flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"threads": 1, "calls": args.calls, "sample_rate": SR, "machine": platform.machine()}
    (RESULTS / "augment_throughput.json").write_text(
        json.dumps({"meta": meta, "rows": rows}, indent=2)
    )
    lines = [
        f"# WaveformAugmenter throughput (1 thread, {args.calls} calls per cell)",
        "",
        "Audio seconds augmented per CPU-second (higher is better).",
        "",
        "| configuration | " + " | ".join(f"{s:g} s utterances" for s in LENGTHS_S) + " |",
        "|---|" + "---|" * len(LENGTHS_S),
    ]
    for name in dict.fromkeys(r["config"] for r in rows):
        cells = [f"{r['audio_s_per_cpu_s']:.0f}" for r in rows if r["config"] == name]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    (RESULTS / "augment_throughput.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
