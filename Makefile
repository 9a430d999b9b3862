# Set-up and the two entry points of the README:
#   make demo   install everything, then run the main job on the embedded default data
#   make test   install everything, then run the test suite
# Both create .venv on first use; system packages come from apt-get (root) when missing.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
OUT    ?= outputs/demo
# espeak-ng, flite, festival (+ its kal voice) speak the synthetic-speech corpus (tests, demo); chromium and its
# driver run the web page test. Checked with dpkg -s: a package name is not always a command (festvox-kallpc16k).
APT_PACKAGES := espeak-ng flite festival festvox-kallpc16k chromium chromium-driver

.PHONY: demo asr-demo draw-demo example-demo test install system-deps lint bench benchmarks-md clean

install: system-deps $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:$$missing"; \
		SUDO=""; [ "$$(id -u)" -ne 0 ] && SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

# The README demo. The shipped speech model (models/, by name: no --model needed) on speech it never trained on: 5
# held-out utterances of each synthetic test set (sentences and voices absent from its training audio), printing
# WER/CER per decoder and every transcript beside its reference. Then each recipe's tiny preset trains end to end, as a
# check of the training pipeline on this machine.
demo: asr-demo draw-demo

HELD := $(OUT)/data/heldout
MINI := $(OUT)/data/synth-mini
asr-demo: install
	$(BIN)/python data_prep/synth_speech.py --fetch --cache $(OUT)/cache --out $(HELD) --sample 5
	OMP_WAIT_POLICY=PASSIVE $(BIN)/speechdraw evaluate --decoder greedy beam rescore --transcripts \
		--json $(OUT)/heldout.json --manifest $(HELD)/test.jsonl $(HELD)/test_voice.jsonl \
		$(HELD)/test_noisy.jsonl $(HELD)/test_reverb.jsonl $(HELD)/test_phone.jsonl
	$(BIN)/speechdraw transcribe $(HELD)/audio/test_voice/*.flac --format all --output-dir $(OUT)/transcripts
	@echo "--- the training pipeline: the tiny preset on a mini corpus (a check, not a model) ---"
	$(BIN)/python data_prep/synth_speech.py --fetch --cache $(OUT)/cache --out $(MINI) \
		--hours 0.02 --dev-utts 4 --test-utts 4 --max-words 10
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python recipes/asr/train.py --preset tiny --data.train $(MINI)/train.jsonl \
		--data.dev $(MINI)/train.jsonl --train.run_dir $(OUT)/asr-tiny --train.resume auto
	$(BIN)/python recipes/asr/evaluate.py --model $(OUT)/asr-tiny/release --manifest $(MINI)/train.jsonl --show 0

# DRAW: the shipped paper model (draw-mnist, by name: no --model needed) draws 64 digits and a GIF of its 64 glimpses
# with their write windows into $(OUT)/draw. Then the tiny preset trains on Fashion-MNIST from Debian's
# dataset-fashion-mnist (MIT licence; IDX files in $(FASHION)), about a minute on one core, as a check of the training
# pipeline, and draws into $(OUT)/draw-tiny-samples.
FASHION ?= /usr/share/datasets/fashion-mnist
draw-demo: install
	$(BIN)/speechdraw sample --num 64 --out $(OUT)/draw --gif --show-attention
	@echo "--- the training pipeline: the tiny preset on Fashion-MNIST (a check, not a model) ---"
	@[ -f $(FASHION)/train-images-idx3-ubyte.gz ] || { \
		echo "installing the Debian package dataset-fashion-mnist"; \
		SUDO=""; [ "$$(id -u)" -ne 0 ] && SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq dataset-fashion-mnist; }
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python recipes/draw/train.py --preset tiny --data.root $(FASHION) \
		--train.run_dir $(OUT)/draw-tiny --train.resume auto
	$(BIN)/speechdraw sample --model $(OUT)/draw-tiny/release --num 64 --out $(OUT)/draw-tiny-samples --gif \
		--show-attention

example-demo: install
	$(BIN)/python recipes/example/train.py --preset demo --train.run_dir $(OUT)/example --train.resume auto

test: install
	$(BIN)/python -m pytest --durations=15 -q

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python bench/engine_step.py
	$(BIN)/python bench/make_benchmarks_md.py

benchmarks-md:
	$(BIN)/python bench/make_benchmarks_md.py

clean:
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache
