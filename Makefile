# The two set-up commands of the README. Both build .venv on first use and reuse it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.tfstream-installed
RUNS   ?= runs

.PHONY: demo demo-retrain test install browser clean

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

# pytest exits 5 when it collects no test; make then fails, as it should.
test: $(STAMP) browser
	$(BIN)/python -m pytest

clean:
	rm -rf $(RUNS) .pytest_cache
