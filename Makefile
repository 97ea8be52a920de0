# One-command set-up on a fresh Debian machine (as root): apt packages, .venv, pip install.
# Every target is idempotent and fast when already set up.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PIP_STAMP := $(VENV)/.installed
APT_STAMP := $(VENV)/.apt-installed
APT_PACKAGES := espeak-ng flite fortunes fortunes-min sox libsndfile1
CORPUS := data/MiniLibriSpeech
PREPARED := results/prepared
PYTEST_ARGS ?= -q
# corpus v3 by default (a 10 h pool, half of it 'other', 200 pool-only voices); the v2 corpus:
# CORPUS_ARGS="--pool_hours 2 --other_pool_fraction 0 --pool_voices 0"
CORPUS_ARGS ?=

.PHONY: setup test demo demo-swbd pretrain-tiny lint corpus lm-tools lm ssl-gain

setup: $(APT_STAMP) $(PIP_STAMP)

$(APT_STAMP):
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing apt packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@test -d $(VENV) || python3 -m venv $(VENV)
	@touch $@

$(PIP_STAMP): requirements.txt requirements-test.txt pyproject.toml | $(APT_STAMP)
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt -r requirements-test.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	@touch $@

# pytest exits 5 when it collects no test; that is not a failure of the set-up.
# lm-tools first, so that the lmplz tests run instead of skipping.
test: setup lm-tools
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

lint: setup
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

corpus: setup
	$(PY) -m d2v_speech.synthetic.librispeech --out $(CORPUS) $(CORPUS_ARGS)

# The main job on the embedded corpus: corpus -> CSVs -> tiny pretraining (DEMO_ARM, the
# SSL-gain benchmark's best arm, for DEMO_UPDATES updates) -> CTC fine-tuning on the
# Libri-light-style 1 h split -> WER/CER on test-clean and test-other (CPU), greedy and with a
# 4-gram LM (lexicon beam search, LM weights tuned on dev-clean).
# Re-running resumes an interrupted run; a finished run is left as it is.
DEMO_ARM ?= data2vec2
DEMO_UPDATES ?= 2500
PRETRAINED := results/pretrain/$(DEMO_ARM)_tiny/1234
FINETUNED := results/finetune/tiny_1h/1234
FINETUNED_SWBD := results/finetune/tiny_switchboard/1234
LM_DIR := results/lm
LM_ARPA := $(LM_DIR)/4gram.arpa
# bf16 autocast where the CPU has bf16 matrix units (AMX / AVX512-BF16: about 1.5x faster
# tiny training steps, measured); fp32 elsewhere. Override: make demo PRECISION=fp32
PRECISION ?= $(shell grep -qE 'amx_bf16|avx512_bf16' /proc/cpuinfo 2>/dev/null && echo bf16 || echo fp32)

pretrain-tiny: corpus
	$(PY) -m d2v_speech.corpora.librispeech --data_folder $(CORPUS) --save_folder $(PREPARED)
	OMP_NUM_THREADS=2 $(PY) recipes/LibriSpeech/pretrain.py hparams/tiny/$(DEMO_ARM).yaml \
		--optimizer_step_limit=$(DEMO_UPDATES) --precision=$(PRECISION)
	$(PY) -m d2v_speech.training.summarize $(PRETRAINED)

demo: pretrain-tiny lm
	OMP_NUM_THREADS=2 $(PY) recipes/LibriSpeech/finetune.py hparams/tiny/finetune_ctc.yaml \
		--pretrained=$(PRETRAINED) --train_split=1h --output_folder=$(FINETUNED) \
		--precision=$(PRECISION)
	OMP_NUM_THREADS=2 $(PY) recipes/LibriSpeech/evaluate.py $(FINETUNED) --lm $(LM_ARPA) \
		--lexicon $(LM_DIR)/lexicon.txt --tune_on dev-clean --output_folder=$(FINETUNED)/eval_4gram
	@echo "== greedy decoding"; cat $(FINETUNED)/results.md
	@echo "== lexicon beam search + 4-gram LM"; cat $(FINETUNED)/eval_4gram/results.md

# The SSL-gain benchmark (benchmarks/ssl_gain.py): scratch, data2vec, aqc, data2vec2, aqc2 at
# one pretraining CPU budget, 3 fine-tuning seeds on 10m and 1h, two jobs side by side on one
# thread each. Many hours on 2 cores; re-running resumes. SSL_GAIN_ARGS="--seeds 1 --splits 1h"
SSL_GAIN_ARGS ?=
ssl-gain: corpus lm
	$(PY) benchmarks/ssl_gain.py --precision=$(PRECISION) $(SSL_GAIN_ARGS)

# KenLM's lmplz and build_binary, compiled into tools/kenlm/bin (apt build deps, about 40 s).
lm-tools: setup
	PY=$(PY) tools/build_kenlm.sh

# 4-gram LM of the embedded corpus's fortune text without any dev/test sentence, and its lexicon.
lm: $(LM_ARPA)

$(LM_ARPA): | lm-tools corpus
	$(PY) -m d2v_speech.lm.lm_text --data_folder $(CORPUS) --out $(LM_DIR)/lm.txt
	$(PY) -m d2v_speech.lm.ngram --text $(LM_DIR)/lm.txt --out $@ --order 4 \
		--lexicon $(LM_DIR)/lexicon.txt

# Switchboard on the generated mini Switchboard (LDC layout, 8 kHz two-channel SPHERE): the
# tiny pretrained model of `make demo` (pretrained first if missing) -> CTC fine-tuning on the
# mini swb1 conversations -> WER on the Hub5'00-style swbd, callhome and eval2000 sets.
demo-swbd: pretrain-tiny
	OMP_NUM_THREADS=2 $(PY) recipes/Switchboard/finetune.py hparams/tiny/switchboard_ctc.yaml \
		--pretrained=$(PRETRAINED) --output_folder=$(FINETUNED_SWBD) --precision=$(PRECISION)
	@cat $(FINETUNED_SWBD)/results.md
