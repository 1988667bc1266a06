# The two set-up commands of the README. Both build .venv on first use and reuse it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.tfstream-installed
RUNS   ?= runs

.PHONY: demo demo-retrain test install browser torch clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel

# Re-install when the package metadata changes; the install is editable, so code
# changes need no re-install.
$(STAMP): setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,datasets,dask,jax]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/tfstream run --config configs/flights_dense.yaml --workdir $(RUNS)/flights
	$(BIN)/tfstream run --config configs/flights_distance.yaml --workdir $(RUNS)/flights_distance
	$(BIN)/tfstream run --config configs/digits_lstm.yaml --workdir $(RUNS)/digits
	$(BIN)/tfstream summary $(RUNS)/flights $(RUNS)/flights_distance $(RUNS)/digits
	$(BIN)/tfstream inspect $(RUNS)/flights/dataset --plot $(RUNS)/flights/plots > $(RUNS)/flights/inspect.txt
	$(BIN)/tfstream inspect $(RUNS)/flights/dataset --html $(RUNS)/flights/report.html > /dev/null
	$(BIN)/tfstream inspect $(RUNS)/flights_distance/dataset --plot $(RUNS)/flights_distance/plots \
		> $(RUNS)/flights_distance/inspect.txt
	$(BIN)/tfstream inspect $(RUNS)/digits/dataset --plot $(RUNS)/digits/plots > $(RUNS)/digits/inspect.txt
	@echo "dataset reports: $(RUNS)/{flights,flights_distance,digits}/inspect.txt (plots in $(RUNS)/*/plots/;" \
		"the flights tables and plots as one page: $(RUNS)/flights/report.html)"
	$(MAKE) --no-print-directory demo-retrain

# Scheduled retraining, as a scheduler would run it: the flights of 2013 partitioned into
# 12 monthly spans, then one `tfstream retrain` per month, in order (--until: the months
# after it have not arrived yet). Exit status 0 promoted, 10 kept the champion, 11 nothing
# new; anything else stops the demo. configs/flights_retrain.yaml writes under runs/retrain.
demo-retrain: $(STAMP)
	$(BIN)/python -c "from tfstream.testing import flights_monthly_spans; flights_monthly_spans('runs/retrain/raw')"
	@for month in 01 02 03 04 05 06 07 08 09 10 11 12; do \
		$(BIN)/tfstream retrain --config configs/flights_retrain.yaml --until 2013-$$month > runs/retrain/2013-$$month.txt; \
		status=$$?; echo "2013-$$month: exit status $$status"; \
		case $$status in 0|10|11) ;; *) cat runs/retrain/2013-$$month.txt; exit $$status;; esac; \
	done
	$(BIN)/tfstream models runs --config configs/flights_retrain.yaml --plot runs/retrain/champion.png
	$(BIN)/tfstream models list --config configs/flights_retrain.yaml

# The HTML report's browser test drives the system's chromium (browser builds that
# download themselves are not used). Installed with apt-get where it can be (root, apt);
# anywhere else this says why not, and the test skips with the same advice. Never fails.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then \
		echo "browser test: chromium and chromedriver found"; \
	elif ! command -v apt-get >/dev/null; then \
		echo "browser test skipped: no apt-get to install chromium and chromium-driver (install them by hand)"; \
	elif [ "$$(id -u)" != 0 ]; then \
		echo "browser test skipped: run 'sudo apt-get install -y chromium chromium-driver' (not root here)"; \
	else \
		apt-get install -y --no-install-recommends chromium chromium-driver >/dev/null 2>&1 \
		|| { apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends chromium chromium-driver \
		     >/dev/null 2>&1; } \
		&& echo "browser test: installed chromium and chromium-driver with apt-get" \
		|| echo "browser test skipped: apt-get could not install chromium chromium-driver"; \
	fi

# Keras's PyTorch backend test (tests/training/test_backends.py) needs torch's CPU build.
# PyPI's `torch` for Linux is the CUDA build (about 3 GB with its nvidia-* wheels), so this
# never asks an index for plain `torch`: (a) torch already importable: nothing to do;
# (b) a `torch-*+cpu-<this Python>-*.whl` in a folder of pip's find-links (its config or
# PIP_FIND_LINKS): the newest such wheel (its small dependencies come from the index);
# (c) else PyTorch's CPU index, asked alone (pip's config files and PIP_* index variables
# set aside, so no other index can offer the CUDA build), with a 10 s timeout; else the
# test skips, and this says how to install torch. Never fails.
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu
torch: $(STAMP)
	@if $(BIN)/python -c "import torch" 2>/dev/null; then \
		echo "torch backend test: torch $$($(BIN)/python -c 'import torch; print(torch.__version__)') found"; exit 0; \
	fi; \
	tag=$$($(BIN)/python -c "import sys; print('cp%d%d' % sys.version_info[:2])"); \
	dirs=$$( { $(BIN)/python -m pip config get global.find-links 2>/dev/null; echo "$$PIP_FIND_LINKS"; } \
		| tr ' ' '\n' | sed 's|^file://||' | sort -u); \
	wheel=$$(for d in $$dirs; do [ -d "$$d" ] && ls "$$d"/torch-*+cpu-$$tag-$$tag-*.whl 2>/dev/null; done \
		| awk -F/ '{print $$NF, $$0}' | sort -V | tail -n 1 | cut -d' ' -f2); \
	why="no torch-*+cpu-$$tag-*.whl in pip's find-links"; \
	if [ -n "$$wheel" ] && $(BIN)/python -m pip install --quiet "$$wheel" 2>/dev/null; then \
		echo "torch backend test: installed $$(basename $$wheel)"; exit 0; \
	elif [ -n "$$wheel" ]; then why="pip could not install $$wheel"; fi; \
	if env -u PIP_FIND_LINKS -u PIP_EXTRA_INDEX_URL -u PIP_INDEX_URL PIP_CONFIG_FILE=/dev/null \
		$(BIN)/python -m pip install --quiet --only-binary :all: --index-url $(TORCH_CPU_INDEX) \
		--timeout 10 --retries 0 torch >/dev/null 2>&1; then \
		echo "torch backend test: installed torch $$($(BIN)/python -c 'import torch; print(torch.__version__)')" \
			"from $(TORCH_CPU_INDEX)"; \
	else \
		echo "torch backend test skipped: $$why, and none came from $(TORCH_CPU_INDEX);" \
			"install it with '$(BIN)/python -m pip install torch --index-url $(TORCH_CPU_INDEX)'"; \
	fi

# pytest exits 5 when it collects no test; make then fails, as it should.
test: $(STAMP) browser torch
	$(BIN)/python -m pytest

clean:
	rm -rf $(RUNS) .pytest_cache
