# Every target installs what it needs: a fresh machine only needs python3 (3.11) and make.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export TF_CPP_MIN_LOG_LEVEL ?= 3
export MLFLOW_DISABLE_TELEMETRY ?= true
export PYTHONUNBUFFERED := 1

.PHONY: setup setup-dev system-deps demo test lint bench bench-core bench-storage bench-throughput \
	bench-efficiency bench-efficiency-champions bench-search compose-check bench-serving bench-defaults bench-workers bench-refit bench-linear \
	bench-fidelity bench-transfer source-imdb bench-learning-curve bench-search-transfer lock clean

# Benchmark knobs: wall-clock seconds per search-quality study, epochs per efficiency arm, seeds.
BUDGET ?= 7200
EPOCHS ?= 96
SEEDS ?= 1 2 3 4 5 6 7 8
# Search-quality workers on this host.
WORKERS ?= 2
# Efficiency bench processes sharing the work (each with one intra-op thread when more than one),
# and the arms to run (default: the four compared arms; e.g. ARMS=tpe_successive_halving).
JOBS ?= 1
ARMS ?=
# RERUN_STALE=1 re-runs stored runs of rung-pruned arms marked † (rungs one epoch late).
RERUN_STALE ?=

# The stamp depends on the lock files, so `make setup` re-installs only when pins change.
$(VENV)/.installed: requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check uv==0.13.9 || true
	@if $(PY) -m uv --version >/dev/null 2>&1; then \
	  $(PY) -m uv pip install -q --python $(PY) -r requirements.lock; \
	else \
	  $(PY) -m pip install -q --disable-pip-version-check -r requirements.lock; \
	fi
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	@if $(PY) -m uv --version >/dev/null 2>&1; then \
	  $(PY) -m uv pip install -q --python $(PY) -r requirements-dev.txt; \
	else \
	  $(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt; \
	fi
	@touch $@

setup: $(VENV)/.installed

setup-dev: $(VENV)/.installed-dev

# The main job: a small search on the bundled demo data (SQLite + local mlruns/),
# ending with a registered `champion` model.
demo: setup
	$(PY) -m search run --config studies/demo.yaml

# System tools the tests use for real: PostgreSQL 15 server binaries and headless Chromium.
system-deps:
	@missing=""; command -v initdb >/dev/null && command -v pg_ctl >/dev/null || missing="$$missing postgresql-15"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing$$missing"; apt-get update -q >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=300 --no-install-recommends $$missing >/dev/null; \
	    pgbin=$$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tail -1); \
	    if [ -n "$$pgbin" ] && ! command -v initdb >/dev/null; then ln -sf $$pgbin/initdb $$pgbin/pg_ctl $$pgbin/postgres /usr/local/bin/; fi; \
	  else echo "missing:$$missing (install them; the tests that need them fail with a clear message)"; fi; \
	fi

test: setup-dev system-deps
	$(PY) -m pytest

lint: setup-dev
	$(PY) -m ruff check .

bench-core: setup
	$(PY) bench/core.py

bench-storage: setup-dev
	$(PY) bench/storage.py

bench-throughput: setup
	$(PY) bench/throughput.py

# One worker with all cores vs one worker per core (one intra-op thread each), same trials.
bench-workers: setup
	$(PY) bench/workers.py

bench-efficiency: setup
	@cmd="$(PY) bench/efficiency.py --config studies/amazon.yaml --epochs $(EPOCHS) --max-epochs 4 --seeds $(SEEDS)$(if $(ARMS), --arms $(ARMS))$(if $(RERUN_STALE), --rerun-stale)"; \
	if [ "$(JOBS)" -le 1 ]; then exec $$cmd; fi; \
	pids=""; for i in $$(seq $(JOBS)); do $$cmd --cpu-threads 1 & pids="$$pids $$!"; sleep 20; done; \
	rc=0; for p in $$pids; do wait $$p || rc=1; done; exit $$rc

# Each efficiency (arm, seed)'s champion retrained as it ran and scored once on the test file
# (needs bench-efficiency's results: every arm stored there, or ARMS=...).
bench-efficiency-champions: setup
	$(PY) bench/efficiency_champions.py --seeds $(SEEDS)$(if $(ARMS), --arms $(ARMS))

# The shared data sets live in ../shared/data (not committed); see README "Results".
# One worker per core (--cpu-threads cores/N): 1.36x the trials of one process on 2 cores
# (bench/results/workers.json).
bench-search: setup
	$(PY) bench/search_quality.py --config studies/imdb.yaml --budget $(BUDGET) --workers $(WORKERS) --reference 0.850 --goal 0.900
	$(PY) bench/search_quality.py --config studies/amazon.yaml --budget $(BUDGET) --workers $(WORKERS) --reference 0.886 --goal 0.890

# Retrain the stored Amazon search's ensemble members on train + validation (needs bench-search).
bench-refit: setup
	$(PY) bench/refit.py --config studies/amazon.yaml --trials 8,281,196,319,156,294,302,428

# A tuned TF-IDF bigram logistic regression on the searches' own splits: what the data allows
# without pretrained embeddings -> bench/results/linear_reference.json.
bench-linear: setup
	$(PY) bench/linear_reference.py --config studies/amazon.yaml studies/imdb.yaml

# Is a training-set fraction a better early rung than an epoch? The same 12 random configurations
# trained on all data (4 epochs) and on a quarter / half of it (2 epochs) -> fidelity.json.
bench-fidelity: setup
	$(PY) bench/fidelity.py --config studies/amazon.yaml --trials 12
	$(PY) bench/fidelity.py --config studies/defaults_reuters.yaml --trials 12

# Weights from a related data set (IMDB) as the start of the baseline model on Amazon, against
# Keras' initial weights, 5 seeds, scored on the test file -> weight_transfer.json.
bench-transfer: setup
	$(PY) bench/weight_transfer.py --source studies/imdb.yaml --target studies/amazon.yaml --seeds $(wordlist 1,5,$(SEEDS))

# The source model of studies/amazon_transfer.yaml: the baseline trial's model on IMDB, as a bundle.
source-imdb: .cache/sources/imdb-baseline/best.h5
.cache/sources/imdb-baseline/best.h5: | setup
	$(PY) bench/weight_transfer.py --source studies/imdb.yaml --save-source .cache/sources/imdb-baseline

# Baseline test accuracy on Amazon against training rows (1k/2k/4k), from scratch and from the
# IMDB source, 3 seeds -> learning_curve.json.
bench-learning-curve: setup source-imdb
	$(PY) bench/learning_curve.py --target studies/amazon.yaml --sizes 1000 2000 4000 --seeds $(wordlist 1,3,$(SEEDS))

# studies/amazon.yaml started from IMDB weights, under the same 2-hour budget as bench-search.
bench-search-transfer: setup source-imdb
	$(PY) bench/search_quality.py --config studies/amazon_transfer.yaml --budget $(BUDGET) --workers $(WORKERS) --reference 0.886 --goal 0.890

# Defaults-only studies (config = data files), 30 minutes each: chance-level trial share.
bench-defaults: setup
	$(PY) bench/short_data.py
	$(PY) bench/search_quality.py --config studies/defaults_short.yaml --budget 1800
	$(PY) bench/search_quality.py --config studies/defaults_reuters.yaml --budget 1800

bench: bench-core bench-storage bench-throughput bench-efficiency bench-search
	$(PY) bench/summarize.py

lock:
	$(PYTHON) -m uv pip compile requirements.txt -o requirements.lock --python-version 3.11 --python-platform x86_64-manylinux_2_28

clean:
	rm -rf $(VENV) .cache

# The champion behind `mlflow models serve`: agreement with `predict` on 100 texts, p50 latency.
bench-serving: setup
	@test -f studies/demo.db || $(MAKE) demo
	$(PY) bench/serving.py --config studies/demo.yaml

# The real container stack on a Docker engine (started from Debian packages when none runs):
# build, up with 3 workers, kill/stop/resume checks from the host -> bench/results/compose.json.
compose-check: setup
	$(PY) bench/compose_check.py
