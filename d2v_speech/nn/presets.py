"""Model size presets (`hparams/model/*.yaml`) resolved from a recipe, wherever it runs from."""

from __future__ import annotations

from pathlib import Path

from d2v_speech.nn.config import EncoderConfig

REPO_ROOT = Path(__file__).resolve().parents[2]
PRESET_FOLDER = REPO_ROOT / "hparams" / "model"


def resolve_preset(name_or_path: str | Path) -> Path:
    """A preset name ("base", "large", "tiny") or a YAML path (absolute, relative to the working
    directory, or relative to the repository root) -> an existing path."""
    candidates = [
        Path(name_or_path),
        REPO_ROOT / name_or_path,
        PRESET_FOLDER / f"{name_or_path}.yaml",
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    known = sorted(p.stem for p in PRESET_FOLDER.glob("*.yaml"))
    raise FileNotFoundError(f"model preset {name_or_path!r} not found; known presets: {known}")


def load_model_config(name_or_path: str | Path, **overrides) -> EncoderConfig:
    """Load a preset and apply field overrides (unknown fields raise, naming them)."""
    values = EncoderConfig.from_yaml(resolve_preset(name_or_path)).to_dict()
    values.update(overrides)
    return EncoderConfig.from_dict(values)
