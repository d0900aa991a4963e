# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Each creates .venv if missing and installs the pinned CPU set into it.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# The second set: Python 3.12 + the newest megatron-core the code supports (requirements/py312.txt).
PYTHON312 ?= $(shell command -v python3.12)
VENV312 := .venv312
PY312 := $(VENV312)/bin/python
STAMP312 := $(VENV312)/.installed
# What the 3.12 set runs (a subset, to keep CI well inside its budget): the unit tests, the
# distributed parity and model build, training save/resume/reshard/kill, the kernel-wired
# layer spec, conversion, generation, SFT/reward/DPO post-training, and a checkpoint from the
# 3.11 set resumed here (test_cross_version.py; needs `make test`'s .venv).
PY312_TESTS ?= tests/unit tests/distributed/test_parity.py tests/distributed/test_model_build.py \
	tests/distributed/test_training.py tests/distributed/test_kernels_wiring.py tests/distributed/test_generate.py \
	tests/distributed/test_sft_training.py tests/distributed/test_reward_model.py tests/distributed/test_dpo.py \
	tests/distributed/test_cross_version.py tests/tools/test_convert.py

.PHONY: demo test test-py312 venv clean

venv: $(STAMP)

$(STAMP): requirements/cpu.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements/cpu.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest tests $(PYTEST_ARGS)

$(STAMP312): requirements/py312.txt setup.py
	test -n "$(PYTHON312)" || { echo "make test-py312 needs python3.12 (set PYTHON312=...)"; exit 2; }
	test -x $(PY312) || $(PYTHON312) -m venv $(VENV312)
	$(PY312) -m pip install -q --upgrade pip
	$(PY312) -m pip install -q -r requirements/py312.txt
	$(PY312) -m pip install -q --no-deps -e .
	touch $(STAMP312)

# After `make test` (its .venv writes the 0.16.1 checkpoint test_cross_version.py resumes).
test-py312: $(STAMP312) $(STAMP)
	KANANA_OLD_PYTHON=$(abspath $(PY)) $(PY312) -m pytest $(PY312_TESTS) $(PYTEST_ARGS)

demo: $(STAMP)
	$(PY) examples/demo/demo.py

clean:
	rm -rf demo_out .pytest_cache
