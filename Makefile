# The book's two commands: `make book` and `make test`. Each creates the virtual
# environment (VENV, default .venv) and installs requirements.txt plus bnbook first;
# a stamp file makes re-runs fast and is refreshed when requirements.txt or
# pyproject.toml change. `make test VENV=/tmp/v` bootstraps a separate environment.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.bnbook-installed
# Executed widgets need require.js and the ipywidgets HTML manager, equations need
# MathJax; the book serves them itself from vendor/ (see _config.yml), installed from
# npm at the versions in package-lock.json, so pages work offline and never drift.
WIDGET_JS := vendor/jupyter-widgets
MATHJAX := vendor/mathjax
HTML_MANAGER := node_modules/@jupyter-widgets/html-manager
BOOK_FLAGS := -W -n --keep-going --builder html --all
PYTEST_FLAGS := -n 2 --dist loadscope --nbval-lax --nbval-current-env --nbval-cell-timeout=300
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: all book test student assignments bench seeds evidence vendor venv clean distclean

all: book

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: need python3.11 (or python3) on PATH" >&2; exit 1; }
	@$(PY) -m pip --version >/dev/null 2>&1 || { echo "creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv --clear $(VENV); }
	$(PY) -m pip install -r requirements.txt
	@touch $@

vendor: vendor/.stamp

vendor/.stamp: package.json package-lock.json
	@command -v npm >/dev/null || { echo "error: npm is needed to vendor the widget JavaScript (apt-get install npm)" >&2; exit 1; }
	npm ci --no-audit --no-fund --ignore-scripts
	rm -rf $(WIDGET_JS) && mkdir -p $(WIDGET_JS)
	cp node_modules/requirejs/require.js $(WIDGET_JS)/
	cp $(HTML_MANAGER)/dist/embed-amd.js $(HTML_MANAGER)/dist/*.{woff,woff2,ttf,eot,svg} $(WIDGET_JS)/
	cp $(HTML_MANAGER)/dist/embed.js.LICENSE.txt $(WIDGET_JS)/embed-amd.js.LICENSE.txt
	rm -rf $(MATHJAX) && mkdir -p $(MATHJAX)
	cp -r node_modules/mathjax/es5/{tex-mml-chtml.js,input,output,ui,a11y,sre,adaptors} node_modules/mathjax/LICENSE $(MATHJAX)/
	@touch $@

# Progress bars (bnbook.display.progress_bar) are for a learner running a chapter, not for the pages.
book student: export TQDM_DISABLE := 1

book: $(STAMP) vendor
	$(VENV)/bin/jupyter-book build . $(BOOK_FLAGS)
	@echo "The book is in _build/html/index.html"

# One pytest run: bnbook's unit tests, the book build + browser check (tests/test_book.py)
# and every notebook in chapters/ executed by nbval (fails on exceptions, e.g. a failed claim).
# Exit code 5 means pytest collected nothing, which here always means something is broken.
test: $(STAMP) vendor
	@$(PY) -m pytest $(PYTEST_FLAGS) tests chapters $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests (exit 5); check PYTEST_ARGS and that tests/ and chapters/ exist" >&2; fi; \
	exit $$rc

student: $(STAMP) vendor
	$(PY) scripts/student_edition.py --out _build/student

# Autograded assignments (otter-grader): _build/assignments/<chapter>/{student,autograder}/.
assignments: $(STAMP)
	$(PY) scripts/assignments.py --out _build/assignments

bench: $(STAMP)
	$(PY) scripts/benchmark.py

# Every chapter under each base seed in SEEDS, JOBS at a time; every claim tabulated in
# _build/seeds/claims.md. Fails if any claim fails on any seed. `make seeds SEEDS="3 4"`.
SEEDS ?= 0 1 2 3 4 5 6 7 8 9
JOBS ?= 2
seeds: $(STAMP)
	$(PY) scripts/seeds.py --seeds "$(SEEDS)" --jobs $(JOBS) $(if $(CHAPTERS),--chapters $(CHAPTERS))

# Rewrite the bottom line's scoreboard records (bnbook/evidence/<chapter>.json) from the chapters on the
# book's base seed 0; every later run of a chapter checks its findings against them (bnbook.evidence).
evidence: $(STAMP)
	BNBOOK_EVIDENCE_UPDATE=1 $(PY) scripts/seeds.py --seeds 0 --jobs $(JOBS) --out _build/evidence-run $(if $(CHAPTERS),--chapters $(CHAPTERS))

clean:
	rm -rf _build vendor .pytest_cache .jupyter_cache

distclean: clean
	rm -rf $(VENV) node_modules
