# Two commands on a fresh machine: `make test` and `make demo`. Each creates .venv with the Python
# named in .python-version (3.10: lava-nc 0.10.0 requires it) and installs what is missing.

PY_VERSION := $(shell cat .python-version)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

# Find the interpreter: the pyenv build named in .python-version, else python3.10 on PATH.
BASE_PYTHON := $(firstword $(wildcard $(HOME)/.pyenv/versions/$(PY_VERSION)/bin/python3) \
                           $(shell command -v python$(basename $(PY_VERSION)) 2>/dev/null))

.PHONY: test demo venv install clean bench

venv: $(PY)

$(PY):
	@test -n "$(BASE_PYTHON)" || { echo "error: Python $(PY_VERSION) not found (pyenv install $(PY_VERSION), or put python3.10 on PATH)"; exit 1; }
	$(BASE_PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[lava,train,dev]"
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

# Two pytest-xdist workers (the machine has 2 cores); tests that share an expensive fixture carry
# one xdist_group mark and run on one worker (tests/conftest.py).
test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadgroup

demo: $(STAMP)
	$(VENV)/bin/aolo demo

bench: $(STAMP)
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info reports/demo
