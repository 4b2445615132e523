# Set-up and everyday commands. Everything runs inside ./.venv, made on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# torch is installed first and on its own: a plain `torch` requirement would pull a multi-GB build
# where a local wheel of this version exists. Override for another build, e.g. TORCH_SPEC=torch==2.11.0
TORCH_SPEC ?= torch==2.13.0
SHARED ?= ../shared
DEMO_IN  ?= $(SHARED)/media/pan-720p30-h264-noaudio.mp4
DEMO_OUT ?= out/demo-annotated.mp4

.PHONY: install test demo bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

test: install
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -ra

demo: install
	$(VENV)/bin/effdet-video demo -o out/demo

bench: install
	$(VENV)/bin/effdet-video bench --json out/bench.json

clean:
	rm -rf $(VENV) out build *.egg-info
