# Two entry points for a fresh clone:
#   make demo   set up, fetch a demo library of real CC0 sounds, index it, serve the page
#   make test   set up and run the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
CLAPDEX := $(VENV)/bin/clapdex
DEMO_HOME ?= $(HOME)/.clapdex-demo
DEMO_LIBRARY ?= demo-library
# 207 Sonic Pi samples (CC0-1.0), as published on the npm registry.
DEMO_PACKAGE ?= supersonic-scsynth-samples@0.84.2

.PHONY: setup demo test

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,qdrant,postgres,cluster]"
	touch $@

$(DEMO_LIBRARY)/.fetched:
	mkdir -p $(DEMO_LIBRARY)
	cd $(DEMO_LIBRARY) && npm pack --silent $(DEMO_PACKAGE) >/dev/null && \
		tar xzf supersonic-scsynth-samples-*.tgz --strip-components=1 package/samples package/LICENSE && \
		rm supersonic-scsynth-samples-*.tgz
	touch $@

demo: setup $(DEMO_LIBRARY)/.fetched
	@# --reembed: a home an older clapdex indexed with other shipped weights is embedded again with these.
	$(CLAPDEX) --home $(DEMO_HOME) index --reembed $(DEMO_LIBRARY)
	@# A home reused from an earlier clone: doctor names the folders gone with it, to `clapdex forget`.
	-$(CLAPDEX) --home $(DEMO_HOME) doctor
	$(CLAPDEX) --home $(DEMO_HOME) ui

test: setup
	$(PY) -m pytest -q -rs
