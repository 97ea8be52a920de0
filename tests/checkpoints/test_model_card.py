"""Model cards: every export writes one (DST/README.md beside an HF directory's files, DST.md
beside a file) that says what the model was trained on, carries a fine-tuned run's test scores
exactly as its results.json stores them, and whose snippets import what exists and run."""

import ast
import importlib
import importlib.util
import json
import logging
import re
from pathlib import Path

import pytest
import torch
import yaml
from export_helpers import REPO, small_config, trained_checkpoint

from d2v_speech.asr.ctc_model import CTCModel
from d2v_speech.asr.hf_export import main as hf_export_main
from d2v_speech.asr.model_io import save_ctc_model
from d2v_speech.asr.scoring import score, write_results
from d2v_speech.asr.vocabulary import LetterVocabulary
from d2v_speech.checkpoints import (
    LoadedCheckpoint,
    card_path,
    load_checkpoint,
    main as checkpoints_main,
    read_training_run,
    render_model_card,
    save_native,
)
from d2v_speech.nn import Data2VecAudioModel
from d2v_speech.ssl.aqc import AQCObjective

CKPT = "CKPT+2024-01-01+00-00-00+00"
FINETUNE_YAML = """\
seed: 1
pretrained: results/pretrain/aqc_tiny/1234
train_split: 1h
data_folder: data/MiniLibriSpeech
train_csv:
output_folder: {out}
vocabulary_kind: letters
precision: bf16
optimizer_step_limit: 400
max_update: 400
best_checkpoint_metric: WER
ctc_model: !name:d2v_speech.asr.model_io.build_ctc_model
    pretrained: !ref <pretrained>
    model_preset: tiny
optimizer: !name:torch.optim.AdamW
    lr: 0.001
"""
PRETRAIN_TAGS = """\
objective: !new:d2v_speech.ssl.aqc.AQCObjective
    latent_vars: 8
optimizer: !name:torch.optim.AdamW
    lr: 0.001
"""
#: the module paths a card may name, by their top-level package
PACKAGES = ("d2v_speech", "transformers", "fairseq", "s3prl", "speechbrain", "torch")


# ---------------------------------------------------------------------------- card parsing
def section(card: str, heading: str) -> str:
    """The text under `### heading` up to the next heading of level 2 or 3."""
    match = re.search(rf"^### {re.escape(heading)}\n(.*?)(?=^##)", card + "\n## end", re.S | re.M)
    assert match, f"no section {heading!r}"
    return match.group(1)


def blocks(text: str, language: str = "python") -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)\n```", text, re.S | re.M)


def run_snippet(code: str, path: str, replacement: str, **names) -> dict:
    """Execute a card's code block with the export's path replaced; its namespace after."""
    quoted = json.dumps(path)
    assert quoted in code, code
    namespace = dict(names)
    exec(compile(code.replace(quoted, json.dumps(replacement)), "<card>", "exec"), namespace)
    return namespace


# ---------------------------------------------------------------------------- runs
@pytest.fixture(scope="module")
def finetune_run(tmp_path_factory):
    """A fine-tuning output folder as the recipe leaves it: hyperparams.yaml, results.json and
    save/CKPT+*/{model.ckpt, CKPT.yaml, brain.ckpt} (a random model: the card only reads)."""
    out = tmp_path_factory.mktemp("finetune") / "tiny_1h" / "1"
    folder = out / "save" / CKPT
    torch.manual_seed(0)
    vocabulary = LetterVocabulary()
    model = CTCModel(
        Data2VecAudioModel(small_config()),
        len(vocabulary),
        vocabulary=vocabulary,
        info={"train_split": "1h", "pretrained": "results/pretrain/aqc_tiny/1234"},
        mask_prob=0.0,
        mask_channel_prob=0.0,
    )
    save_ctc_model(model, folder / "model.ckpt")
    meta = {"WER": 41.5, "CER": 20.25, "end-of-epoch": True, "unixtime": 1.0}
    (folder / "CKPT.yaml").write_text(yaml.safe_dump(meta))
    (folder / "brain.ckpt").write_text(yaml.safe_dump({"optimizer_step": 400, "step": 0}))
    (out / "hyperparams.yaml").write_text(FINETUNE_YAML.format(out=out))
    rates = {
        "test-clean": score(["THE CAT SAT ON IT", "A DOG RAN"], ["THE CAT SAT ON", "A DOG RUN"]),
        "test-other": score(["SHE SAW THREE BIRDS"], ["SEE SAW THE BIRD"]),
    }
    write_results(out, rates, {"decoder": "greedy", "checkpoint": str(out / "save")})
    return out


@pytest.fixture(scope="module")
def pretrain_run(tmp_path_factory):
    """A pretraining output folder: hyperparams.yaml, save/CKPT+*/{objective.ckpt, CKPT.yaml,
    brain.ckpt} of an aqc objective whose teacher counted 37 updates."""
    out = tmp_path_factory.mktemp("pretrain") / "aqc_tiny" / "1234"
    folder = out / "save" / CKPT
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    objective = AQCObjective(
        Data2VecAudioModel(small_config()),
        latent_vars=8,
        latent_groups=2,
        final_dim=8,
        average_top_k_layers=2,
    )
    objective.teacher.num_updates = 37
    torch.save(objective.state_dict(), folder / "objective.ckpt")
    (folder / "CKPT.yaml").write_text("end-of-epoch: false\nunixtime: 1.0\n")
    (folder / "brain.ckpt").write_text(yaml.safe_dump({"optimizer_step": 1750, "step": 1750}))
    plain = {
        "seed": 1234,
        "data_folder": "data/MiniLibriSpeech",
        "train_splits": ["train-clean-100", "train-other-500"],
        "optimizer_step_limit": 5108,
        "precision": "bf16",
        "model_config": small_config().to_dict(),
    }
    (out / "hyperparams.yaml").write_text(yaml.safe_dump(plain) + PRETRAIN_TAGS)
    return out


def ctc_native(tmp_path, vocab_size=32):
    """A native file of a data2vec encoder (no aqc heads) with a CTC head."""
    encoder = trained_checkpoint(small_config(), aqc=False).build_encoder()
    torch.manual_seed(1)
    head = torch.nn.Linear(encoder.config.embed_dim, vocab_size)
    checkpoint = LoadedCheckpoint.from_model(encoder, ctc_head=head, normalize=True)
    return save_native(checkpoint, tmp_path / "ctc_native.pt")


# ---------------------------------------------------------------------------- fine-tuned
def test_finetuned_export_card_has_the_runs_scores_exactly(finetune_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert hf_export_main([str(finetune_run), "exported_hf"]) == 0
    card = (tmp_path / "exported_hf" / "README.md").read_text(encoding="utf-8")
    sets = json.loads((finetune_run / "results.json").read_text())["sets"]
    for name, scores in sets.items():
        assert f"| {name} | {scores['wer']:.2f} | {scores['cer']:.2f} | " in card
        assert json.dumps(scores["wer"]) in card and json.dumps(scores["cer"]) in card
    stored = blocks(card.split("As stored there:", 1)[1], "json")[0]
    assert json.loads(stored) == sets
    for fact in [
        f"- run: `{finetune_run}`",
        "- objective: CTC fine-tuning (`d2v_speech.asr.model_io.build_ctc_model`)",
        "- pretrained from: `pretrained`: results/pretrain/aqc_tiny/1234",
        "- training data: `train_split`: 1h",
        "- corpus: `data_folder`: data/MiniLibriSpeech",
        "- update limit: `optimizer_step_limit`: 400",
        f"- updates done: 400 (`optimizer_step` of {CKPT}/brain.ckpt)",
        "- precision: `precision`: bf16",
        "- dev scores of this checkpoint: WER 41.5, CER 20.25",
        "- CTC head: 32 outputs, index 0 is the blank: <s> <pad> </s> <unk> | E T A",
        "pipeline_tag: automatic-speech-recognition",
    ]:
        assert fact in card
    assert "note:" not in card  # the exported checkpoint is the one results.json scored


def test_the_hf_card_snippets_run(finetune_run, tmp_path, monkeypatch, capsys):
    pytest.importorskip("transformers")
    monkeypatch.chdir(tmp_path)
    assert hf_export_main([str(finetune_run), "exported_hf"]) == 0
    card = (tmp_path / "exported_hf" / "README.md").read_text(encoding="utf-8")
    absolute = str(tmp_path / "exported_hf")
    (code,) = blocks(section(card, "transformers"))
    assert 'pipeline("automatic-speech-recognition"' in code
    namespace = run_snippet(code, "exported_hf", absolute)
    assert type(namespace["model"]).__name__ == "Data2VecAudioForCTC"
    assert type(namespace["asr"]).__name__ == "AutomaticSpeechRecognitionPipeline"
    (ours,) = blocks(section(card, "d2v_speech"))
    namespace = run_snippet(ours, "exported_hf", absolute)
    assert namespace["encoder"].config.embed_dim == 32
    assert capsys.readouterr().out.count("\n") >= 2  # the pipeline's text and transcribe's list


def test_results_of_another_checkpoint_are_flagged(finetune_run, tmp_path):
    run = tmp_path / "run"
    (run / "save" / "CKPT+b").mkdir(parents=True)
    for name in ("hyperparams.yaml", "results.json"):
        (run / name).write_text((finetune_run / name).read_text())
    for name, wer in (("CKPT+a", 30.0), ("CKPT+b", 12.0)):
        (run / "save" / name).mkdir(exist_ok=True)
        (run / "save" / name / "model.ckpt").write_bytes(b"")
        (run / "save" / name / "CKPT.yaml").write_text(yaml.safe_dump({"WER": wer}))
    record = read_training_run(run / "save" / "CKPT+a" / "model.ckpt")
    assert record.folder == run.resolve() and record.results is not None
    assert record.notes == [
        "results.json scores CKPT+b (the lowest dev WER); this export is CKPT+a"
    ]
    assert read_training_run(run / "save" / "CKPT+b" / "model.ckpt").notes == []
    (run / "results.json").write_text("{")
    assert "results.json could not be read" in read_training_run(run).notes[0]


# ---------------------------------------------------------------------------- pretrained
@pytest.mark.parametrize("target", ["hf", "native", "fairseq", "s3prl"])
def test_every_convert_writes_a_card_naming_objective_and_updates(
    pretrain_run, target, tmp_path, capsys
):
    dst = tmp_path / ("hf" if target == "hf" else f"{target}.pt")
    assert checkpoints_main(["convert", str(pretrain_run), str(dst), "--to", target]) == 0
    card = card_path(dst)
    assert card == (dst / "README.md" if target == "hf" else tmp_path / f"{target}.md")
    assert capsys.readouterr().out == f"wrote {dst} ({target})\nwrote {card} (its model card)\n"
    text = card.read_text(encoding="utf-8")
    for fact in [
        "- objective: `d2v_speech.ssl.aqc.AQCObjective`",
        f"- updates done: 1750 (`optimizer_step` of {CKPT}/brain.ckpt)",
        "- update limit: `optimizer_step_limit`: 5108",
        "- training data: `train_splits`: train-clean-100, train-other-500",
        "- update count in the checkpoint: 37",
        "- read from: a d2v_speech_recipe checkpoint",
        "A data2vec-aqc speech encoder, exported by d2v_speech",
    ]:
        assert fact in text, fact
    assert "## Results" not in text and "`d2v_speech.nn.EncoderConfig`" in text
    config = json.loads(blocks(text.split("## Config", 1)[1], "json")[0])
    assert config == json.loads(json.dumps(small_config().to_dict()))
    # the card sits beside the export, which is what it was: HF ignores README.md
    if target == "hf":
        assert sorted(p.name for p in dst.iterdir()) == [
            "README.md",
            "config.json",
            "model.safetensors",
        ]
    else:
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([dst.name, card.name])
    assert load_checkpoint(dst).config.embed_dim == 32


def test_a_card_without_a_run_says_so_and_file_cards_never_replace_the_file(tmp_path):
    source = ctc_native(tmp_path)
    dst = tmp_path / "model.md"  # a file export whose own suffix is the card's
    assert checkpoints_main(["convert", str(source), str(dst), "--to", "native"]) == 0
    card = card_path(dst)
    assert card == tmp_path / "model.md.md" and load_checkpoint(dst).ctc_head is not None
    text = card.read_text(encoding="utf-8")
    assert "- not recorded: the source is a d2v_speech checkpoint" in text
    assert "- CTC head: 32 outputs, index 0 is the blank\n" in text
    with pytest.raises(ValueError, match="target must be one of"):
        render_model_card(load_checkpoint(source), "onnx", "x.onnx")


# ---------------------------------------------------------------------------- snippets
def resolve(dotted: str) -> object:
    """The module or attribute a dotted name means (longest importable module prefix)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            found = getattr(found, name)
        return found
    raise ModuleNotFoundError(dotted)


def check_names(card: str) -> int:
    """Import every module and name the card mentions; returns how many were checked."""
    checked = 0
    for code in blocks(card):
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.ImportFrom):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name) or importlib.util.find_spec(
                        f"{node.module}.{alias.name}"
                    ), f"{node.module}.{alias.name}"
                    checked += 1
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    importlib.import_module(alias.name)
                    checked += 1
    # dotted names, not the export's file names ("fairseq.pt", ".../s3prl.md")
    pattern = rf"(?<![\w/.-])((?:{'|'.join(PACKAGES)})(?:\.[A-Za-z_]\w*)+)"
    for dotted in set(re.findall(pattern, card)) - set(re.findall(r"\S+\.(?:pt|md)\b", card)):
        if dotted == "s3prl.nn":  # its import needs the torchaudio stubs the card gives
            (package,) = importlib.util.find_spec("s3prl").submodule_search_locations
            upstream = Path(package) / "nn" / "upstream.py"
            assert "class S3PRLUpstream" in upstream.read_text(encoding="utf-8")
        else:
            assert resolve(dotted) is not None, dotted
        checked += 1
    for module in re.findall(r"python -m ([\w.]+)", card):
        assert importlib.util.find_spec(module), module
        checked += 1
    for path in re.findall(r"\b((?:recipes|hparams)/[\w/.]+\.(?:py|yaml))", card):
        assert (REPO / path).is_file(), path
        checked += 1
    return checked


def test_every_name_the_cards_mention_exists(pretrain_run, finetune_run, tmp_path):
    pytest.importorskip("fairseq")
    pytest.importorskip("s3prl")
    logging.getLogger("fairseq").setLevel(logging.WARNING)
    cards = []
    for target in ("hf", "native", "fairseq", "s3prl"):
        dst = tmp_path / ("hf" if target == "hf" else f"{target}.pt")
        assert checkpoints_main(["convert", str(pretrain_run), str(dst), "--to", target]) == 0
        cards.append(card_path(dst).read_text(encoding="utf-8"))
    assert hf_export_main([str(finetune_run), str(tmp_path / "asr_hf")]) == 0
    cards.append((tmp_path / "asr_hf" / "README.md").read_text(encoding="utf-8"))
    ctc = ctc_native(tmp_path, vocab_size=10)
    assert checkpoints_main(["convert", str(ctc), str(tmp_path / "ctc.pt"), "--to", "fairseq"]) == 0
    assert checkpoints_main(["convert", str(ctc), str(tmp_path / "ctc_hf"), "--to", "hf"]) == 0
    cards += [
        card_path(tmp_path / "ctc.pt").read_text(),
        (tmp_path / "ctc_hf/README.md").read_text(),
    ]
    for card in cards:
        assert check_names(card) > 10
        for tool in ("transformers", "fairseq", "s3prl", "SpeechBrain", "d2v_speech"):
            assert section(card, tool).strip()
    assert hasattr(LetterVocabulary, "write_dict")  # named in the fine-tuned fairseq card


def test_the_other_tools_snippets_run(pretrain_run, tmp_path):
    s3prl_dst, native_dst = tmp_path / "upstream.pt", tmp_path / "native.pt"
    for dst, target in ((s3prl_dst, "s3prl"), (native_dst, "native")):
        assert checkpoints_main(["convert", str(pretrain_run), str(dst), "--to", target]) == 0
    native_card = card_path(native_dst).read_text(encoding="utf-8")
    (speechbrain,) = blocks(section(native_card, "SpeechBrain"))
    hidden = run_snippet(speechbrain, str(native_dst), str(native_dst))["hidden_states"]
    assert hidden.shape[:2] == (small_config().num_layers + 1, 2)
    (ours,) = blocks(section(native_card, "d2v_speech"))
    assert run_snippet(ours, str(native_dst), str(native_dst))["checkpoint"].teacher_state
    (yaml_block,) = blocks(section(native_card, "SpeechBrain"), "yaml")
    assert "!new:d2v_speech.integrations.speechbrain_lobe.Data2VecEncoder" in yaml_block
    pytest.importorskip("s3prl")
    (code,) = blocks(section(card_path(s3prl_dst).read_text(encoding="utf-8"), "s3prl"))
    hidden_states = run_snippet(code, str(s3prl_dst), str(s3prl_dst))["hidden_states"]
    assert len(hidden_states) == small_config().num_layers + 1


def test_the_fairseq_snippets_run(tmp_path):
    pytest.importorskip("fairseq.examples.data2vec.models.data2vec_audio")
    logging.getLogger("fairseq").setLevel(logging.WARNING)
    pretrained = save_native(trained_checkpoint(small_config(), aqc=False), tmp_path / "d2v.pt")
    for source, name in ((pretrained, "data2vec"), (ctc_native(tmp_path), "ctc")):
        dst = tmp_path / f"{name}_fairseq.pt"
        assert checkpoints_main(["convert", str(source), str(dst), "--to", "fairseq"]) == 0
        (code,) = blocks(section(card_path(dst).read_text(encoding="utf-8"), "fairseq"))
        if name == "ctc":
            LetterVocabulary().write_dict(tmp_path / "dict" / "dict.ltr.txt")
            code = code.replace('DICT_FOLDER = "."', f"DICT_FOLDER = {str(tmp_path / 'dict')!r}")
        namespace = run_snippet(code, str(dst), str(dst))
        output = namespace["features" if name == "data2vec" else "emissions"]
        assert output.shape[-1] == 32
