# Two commands a new user needs: `make demo` and `make test`. Both create .venv on first use.
VENV   ?= .venv
PYTHON ?= python3
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: setup demo test browser

setup: $(STAMP)

# Re-install only when pyproject.toml changes. The editable install keeps the checkout live.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: setup
	$(BIN)/semantic-pairs demo

test: setup browser
	$(BIN)/python -m pytest -q

# The browser tests drive Debian's chromium: installed with apt-get where this user may (root or
# password-less sudo); elsewhere they skip with the reason, and fail under CI=true.
browser:
	@tests/support/get_browser.sh
