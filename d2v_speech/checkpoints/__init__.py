"""Import and export of data2vec encoder weights.

Sources understood by `load_checkpoint`:

- a Hugging Face `save_pretrained` directory of `Data2VecAudioModel` / `Data2VecAudioForCTC`
  (config.json + model.safetensors or pytorch_model.bin, sharded or not);
- a raw Hugging Face-layout state dict (our own `Data2VecAudioModel.state_dict()` has the same
  keys), given with `config=`;
- an official fairseq data2vec / data2vec-aqc `.pt`, pretrained or CTC fine-tuned
  (`{"model": ..., "cfg": ...}` or the older `{"model": ..., "args": Namespace}`);
- a fairseq data2vec 2.0 audio `.pt` (`data2vec_multi`), pretrained or CTC fine-tuned: ALiBi
  encoder, conv decoder and EMA teacher (`fairseq_data2vec2`);
- a native file written by `save_native` (keeps teacher, pretraining heads and CTC head);
- an s3prl "converted" data2vec upstream (`task_cfg`, `model_cfg`, `model_weight`);
- a checkpoint of our pretraining recipe: a `CKPT+<stamp>` folder, its `objective.ckpt`
  (`Data2VecObjective` / `AQCObjective` state dict), or an output / save folder (the newest
  complete checkpoint is used); the architecture comes from the experiment's `hyperparams.yaml`.

`export_huggingface` writes a directory that `transformers.Data2VecAudioModel.from_pretrained`
(or `Data2VecAudioForCTC` when a CTC head exists) loads; an ALiBi encoder (data2vec 2.0) cannot
go there.

Every `convert` also writes a model card (`model_card`): what the model holds, what it was trained
on (read from the run's hyperparams.yaml when the source is one of our recipe runs), its config,
a fine-tuned run's test WER / CER table and how to load it in transformers, fairseq, s3prl,
SpeechBrain and d2v_speech. A directory export gets ``DST/README.md``; a file export gets
``DST.with_suffix(".md")`` beside the file (``run.pt`` -> ``run.md``).

Command line::

    python -m d2v_speech.checkpoints inspect SRC
    python -m d2v_speech.checkpoints convert SRC DST      # DST dir -> HF, DST *.pt -> native
    python -m d2v_speech.checkpoints convert results/pretrain/aqc_tiny/1234 DST.pt --to native
    python -m d2v_speech.checkpoints convert RUN DST.pt --to fairseq   # data2vec(-aqc) layout
    python -m d2v_speech.checkpoints convert RUN DST.pt --to s3prl     # SUPERB upstream

One module per job: `loaded` (the in-memory form and its checks), a reader per format
(`huggingface`, `fairseq`, `fairseq_data2vec2`, `native`, `recipe`), the writers
`fairseq_export` and `s3prl_export` (which also reads s3prl's files), `torch_files` (safe
`torch.load`), `dispatch` (`load_checkpoint`), `run_record` (what a recipe run recorded),
`model_card` and `model_card_snippets` (the card) and `command_line`.
"""

from d2v_speech.checkpoints.command_line import (
    describe,
    main,
)
from d2v_speech.checkpoints.dispatch import (
    load_checkpoint,
    load_encoder,
)
from d2v_speech.checkpoints.fairseq import (
    fairseq_cfg_to_encoder_config,
    load_fairseq,
    parse_conv_feature_layers,
    rename_fairseq_key,
)
from d2v_speech.checkpoints.fairseq_data2vec2 import without_alibi
from d2v_speech.checkpoints.fairseq_export import FormatError, export_fairseq
from d2v_speech.checkpoints.huggingface import (
    encoder_config_to_hf,
    export_huggingface,
    hf_config_to_encoder_config,
    load_huggingface,
    read_json_file,
)
from d2v_speech.checkpoints.loaded import (
    CKPT_FOLDER_PREFIX,
    CKPT_META_FILE,
    FAIRSEQ_CTC_PREFIX,
    FAIRSEQ_FINETUNED_PREFIX,
    FORMAT_FAIRSEQ,
    FORMAT_FAIRSEQ_DATA2VEC2,
    FORMAT_HF,
    FORMAT_NAMES,
    FORMAT_NATIVE,
    FORMAT_RECIPE,
    FORMAT_STATE_DICT,
    HEAD_NAMES,
    HF_PREFIX,
    NATIVE_TAG,
    NATIVE_VERSION,
    OPTIONAL_ENCODER_KEYS,
    RECIPE_HPARAMS_FILE,
    RECIPE_OBJECTIVE_FILE,
    CheckpointError,
    LoadedCheckpoint,
    check_decoder_state,
    check_state_dict,
    expected_encoder_shapes,
    infer_decoder_config,
)
from d2v_speech.checkpoints.model_card import (
    card_path,
    render_model_card,
    write_model_card,
)
from d2v_speech.checkpoints.native import (
    save_native,
)
from d2v_speech.checkpoints.recipe import (
    complete_checkpoint_folders,
    find_recipe_checkpoint,
    load_objective_state,
    load_recipe_checkpoint,
    read_recipe_hparams,
)
from d2v_speech.checkpoints.run_record import TrainingRun, read_training_run
from d2v_speech.checkpoints.s3prl_export import export_s3prl, load_s3prl
from d2v_speech.checkpoints.torch_files import load_torch_file

__all__ = [
    "CKPT_FOLDER_PREFIX",
    "CKPT_META_FILE",
    "CheckpointError",
    "FAIRSEQ_CTC_PREFIX",
    "FAIRSEQ_FINETUNED_PREFIX",
    "FORMAT_FAIRSEQ",
    "FORMAT_FAIRSEQ_DATA2VEC2",
    "FORMAT_HF",
    "FORMAT_NAMES",
    "FORMAT_NATIVE",
    "FORMAT_RECIPE",
    "FORMAT_STATE_DICT",
    "FormatError",
    "HEAD_NAMES",
    "HF_PREFIX",
    "LoadedCheckpoint",
    "NATIVE_TAG",
    "NATIVE_VERSION",
    "OPTIONAL_ENCODER_KEYS",
    "RECIPE_HPARAMS_FILE",
    "RECIPE_OBJECTIVE_FILE",
    "TrainingRun",
    "card_path",
    "check_decoder_state",
    "check_state_dict",
    "complete_checkpoint_folders",
    "describe",
    "encoder_config_to_hf",
    "expected_encoder_shapes",
    "export_fairseq",
    "export_huggingface",
    "export_s3prl",
    "fairseq_cfg_to_encoder_config",
    "find_recipe_checkpoint",
    "hf_config_to_encoder_config",
    "infer_decoder_config",
    "load_checkpoint",
    "load_encoder",
    "load_fairseq",
    "load_huggingface",
    "load_objective_state",
    "load_recipe_checkpoint",
    "load_s3prl",
    "load_torch_file",
    "main",
    "parse_conv_feature_layers",
    "read_json_file",
    "read_recipe_hparams",
    "read_training_run",
    "rename_fairseq_key",
    "render_model_card",
    "save_native",
    "without_alibi",
    "write_model_card",
]
