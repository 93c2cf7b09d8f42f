# rgaudit: the two commands of the README.
PYTHON ?= python3.11
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
# adv-lib depends on torchvision; pinning the release that matches TORCH_SPEC keeps pip from
# replacing the CPU torch by a multi-GB CUDA build. (rgaudit never imports torchvision.)
TORCHVISION_SPEC ?= torchvision==0.28.0
# visdom (an adv-lib dependency) ships only an sdist whose setup.py imports pkg_resources,
# which setuptools 81 removed: build it with an older setuptools.
BUILD_CONSTRAINT := $(VENV)/.build-constraint.txt
PY := $(VENV)/bin/python
STAMP := $(VENV)/.rgaudit-installed

.PHONY: audit test lint bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install "$(TORCH_SPEC)" "$(TORCHVISION_SPEC)"
	@echo 'setuptools<81' > $(BUILD_CONSTRAINT)
	$(PY) -m pip install --build-constraint $(BUILD_CONSTRAINT) "$(TORCH_SPEC)" "$(TORCHVISION_SPEC)" -e ".[test]"
	@touch $(STAMP)

audit: $(STAMP)
	$(VENV)/bin/rgaudit audit

# One torch/BLAS thread in the suite: with two threads, after the attack study has run in the
# same process, torch's batched float64 LU once returned invalid pivots on a finite batch
# (docs/design.md, "Known issue: threaded LAPACK"); the commands default to one thread too.
test: $(STAMP)
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m mypy
	OMP_NUM_THREADS=1 $(PY) -m pytest -q --durations=20

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs build dist
