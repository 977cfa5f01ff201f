# ami-bridge: developer and operator entry points. Run `make help`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
NAME ?=

.PHONY: help demo venv deps test lint lab-up lab-down lab-status lab-record lab-record-all lab-list lab-play clean

help:
	@echo "make demo            set up a venv and run the bridge on built-in recordings (no PBX)"
	@echo "make test            set up everything (apt packages, venv) and run lint + all tests"
	@echo "make lab-up          build the Asterisk chroot if needed (once, minutes) and start it"
	@echo "make lab-record-all  record every lab scenario into fixtures/"
	@echo "make lab-record NAME=internal-busy   record one scenario"
	@echo "make lab-list        list the scenarios"
	@echo "make lab-play NAME=internal-busy     place a scenario's calls, keep no recording"
	@echo "make lab-down        stop Asterisk and any sipp the lab started"

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml scripts/fetch-assets | $(BIN)/python
	scripts/fetch-assets
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

# System packages the tests and the lab need (root: CI and the lab run as root).
deps:
	@scripts/system-deps

demo: venv
	$(BIN)/ami-bridge demo

lint: venv
	$(BIN)/ruff check bridge tests lab bench
	$(BIN)/ruff format --check bridge tests lab bench
	$(BIN)/mypy

test: deps venv lint
	$(BIN)/pytest

lab-up: deps venv
	lab/lab.sh up

lab-down:
	lab/lab.sh down

lab-status:
	lab/lab.sh status

lab-list: venv
	$(BIN)/python lab/driver.py list

lab-record: venv
	@test -n "$(NAME)" || { echo "usage: make lab-record NAME=<scenario> (see make lab-list)"; exit 2; }
	$(BIN)/python lab/driver.py record $(NAME)

lab-play: venv
	@test -n "$(NAME)" || { echo "usage: make lab-play NAME=<scenario> (see make lab-list)"; exit 2; }
	$(BIN)/python lab/driver.py play $(NAME)

lab-record-all: venv
	$(BIN)/python lab/driver.py record --all

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
