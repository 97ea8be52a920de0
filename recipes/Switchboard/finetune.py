#!/usr/bin/env python3
"""Fine-tune a data2vec / data2vec-aqc encoder with CTC on a Switchboard subset; score Hub5'00.

    python recipes/Switchboard/finetune.py hparams/switchboard_ctc.yaml \
        --pretrained=results/pretrain/aqc_base/1234 --data_folder=/data/swbd --train_hours=30
    python recipes/Switchboard/finetune.py hparams/tiny/switchboard_ctc.yaml \
        --pretrained=results/pretrain/aqc_tiny/1234          # the mini Switchboard (generated)

`data_folder` holds the LDC layout (LDC97S62, swb_ms98_transcriptions, LDC2002S09, LDC2002T43;
see docs/switchboard.md). The 8 kHz segments are resampled to 16 kHz. WER is reported on the
Switchboard and CallHome halves of Hub5'00 and on both together (test_swbd, test_callhome,
test_eval2000), scored with jiwer after `normalize_for_scoring` (hesitations dropped, GLM
mappings applied to reference and hypothesis alike). Re-run to resume after an interruption.
"""

# isort: off
import d2v_speech.openmp  # noqa: F401  (before torch: OpenMP threads sleep when they wait)

# isort: on
import sys
from functools import partial
from pathlib import Path

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml

from d2v_speech.data.switchboard_text import GlmRules, normalize_for_scoring
from d2v_speech.training.command_line import check_hparams, parse_recipe_arguments
from d2v_speech.training.finetune_run import finetune_and_score
from d2v_speech.training.finetune_setup import prepare_switchboard_data

if __name__ == "__main__":
    hparams_file, run_opts, overrides = parse_recipe_arguments(sys.argv[1:])
    sb.utils.distributed.ddp_init_group(run_opts)
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    check_hparams(hparams, hparams_file)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    prepare_switchboard_data(hparams)
    glm_csv = Path(hparams["prepared_folder"]) / "glm.csv"
    glm = GlmRules.from_csv(glm_csv) if glm_csv.exists() else None
    run_info = {
        "train_split": "switchboard "
        + (f"{hparams['train_hours']} h" if hparams["train_hours"] else "(all conversations)"),
        "scorer": "jiwer after normalize_for_scoring" + (" + GLM" if glm else ""),
    }
    finetune_and_score(hparams, run_opts, run_info, partial(normalize_for_scoring, glm=glm))
