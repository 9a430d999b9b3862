# Set-up and the two entry points of the README:
#   make demo   install everything, then run the main job on the embedded default data
#   make test   install everything, then run the test suite
# Both create .venv on first use; system packages come from apt-get (root) when missing.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
OUT    ?= outputs/demo
# espeak-ng speaks the synthetic-speech corpus (tests, demo); sox is not needed.
APT_PACKAGES := espeak-ng

.PHONY: demo test install system-deps lint bench benchmarks-md clean

install: system-deps $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do command -v $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:$$missing"; \
		SUDO=""; [ "$$(id -u)" -ne 0 ] && SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

demo: install
	$(BIN)/python recipes/example/train.py --preset demo --train.run_dir $(OUT)/example

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
