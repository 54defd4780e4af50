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
	$(PY) -m pip install --quiet --no-deps lava-dl==0.6.0 torchvision==0.29.1 "opencv-python-headless<4.11"  # netx; --no-deps: README
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	$(VENV)/bin/aolo demo

bench: $(STAMP)
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info reports/demo
