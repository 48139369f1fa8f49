# The two commands of the README: `make serve` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PLUGIN_DIRS := $(wildcard plugins/*)

.PHONY: install serve test bench clean

$(BIN)/.installed: setup.cfg $(wildcard plugins/*/setup.cfg)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -e '.[test]' $(addprefix -e ,$(PLUGIN_DIRS))
	touch $@

install: $(BIN)/.installed

# The benchmark's alternatives (wechatpy, Tencent's sample) come with the bench extra.
$(BIN)/.bench-installed: $(BIN)/.installed setup.cfg
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $@

# Writes config.ini with a fresh Token/EncodingAESKey on first run, prints them,
# and serves the callback at http://127.0.0.1:8000/callback under gunicorn.
serve: install
	$(BIN)/wechatbot init --path config.ini
	WECHATBOT_CONFIG=config.ini $(BIN)/gunicorn -c gunicorn.conf.py

test: install
	$(BIN)/pytest

# wechatbot against a bare Flask route, Tencent's sample and wechatpy (needs wrk: apt-get install wrk).
bench: $(BIN)/.bench-installed
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) var *.egg-info plugins/*/*.egg-info
