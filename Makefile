# Entry points. `make demo` and `make test` do all set-up themselves on a fresh
# machine with Python 3.11 and make: they create .venv and install from PyPI.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: all setup sysdeps demo test soak bench mpy hil clean

all: test

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/backupctl demo

test: $(STAMP) sysdeps
	$(BIN)/python -m pytest -q

# 20 scheduled backups and restores under faults drawn from seed 1, on a virtual
# pair of its own; fails on any silent loss (README: "The soak").
SOAK_RUNS ?= 20
SOAK_SEED ?= 1
soak: $(STAMP)
	$(BIN)/backupctl soak --runs $(SOAK_RUNS) --seed $(SOAK_SEED)

# Debian packages some tests use: ser2net (boards reached as rfc2217:// URLs) and
# lrzsz (ZMODEM through the virtual wire). Installed when missing if we may: as
# root, or with passwordless sudo on a CI machine; otherwise we say what to install.
SYSDEPS := ser2net:ser2net lrzsz:sz
sysdeps:
	@PATH="$$PATH:/usr/sbin:/sbin"; missing=; \
	for dep in $(SYSDEPS); do command -v $${dep#*:} >/dev/null || missing="$$missing $${dep%%:*}"; done; \
	[ -n "$$missing" ] || exit 0; \
	if [ "$$(id -u)" = 0 ]; then sudo=; \
	elif [ -n "$$CI" ] && sudo -n true 2>/dev/null; then sudo="sudo -n"; \
	else echo "make: the tests that need$$missing skip until you install it: sudo apt-get install$$missing"; exit 0; fi; \
	command -v apt-get >/dev/null || { echo "make: no apt-get here: install$$missing yourself"; exit 0; }; \
	echo "installing$$missing with apt-get"; \
	out=$$({ $$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq --no-install-recommends $$missing; } 2>&1) \
	  || { echo "$$out" | tail -5; echo "make: apt-get install$$missing failed: see above"; exit 1; }

bench: $(STAMP) sysdeps
	$(BIN)/backupctl bench

clean:
	-$(BIN)/backupctl sim down 2>/dev/null
	rm -rf build .sim .pytest_cache

# Precompile the firmware for real boards into build/<role>/ and show what fits in flash.
mpy: $(STAMP)
	$(BIN)/python -m host_tools.build

# The suite on two real boards: make hil CONTROLLER=/dev/ttyACM0 BACKUPDEV=E6614864D3417A2B
# (each a port, a USB serial number or an rfc2217:// URL). Flashes both boards, then
# runs every test that does not need virtual boards. PYTEST_ARGS="-k link" narrows it.
HIL_JUNIT ?= build/hil/junit.xml
ifneq ($(filter hil,$(MAKECMDGOALS)),)
ifeq ($(and $(CONTROLLER),$(BACKUPDEV)),)
$(error name both boards: make hil CONTROLLER=<port|serial|url> BACKUPDEV=<port|serial|url> ($(BIN)/backupctl ports lists the attached ones))
endif
endif
hil: $(STAMP)
	$(BIN)/backupctl flash --board controller --port "$(CONTROLLER)"
	$(BIN)/backupctl flash --board backupdev --port "$(BACKUPDEV)"
	@mkdir -p $(dir $(HIL_JUNIT))
	$(BIN)/python -m pytest hil_tests -q --controller-port "$(CONTROLLER)" --backupdev-port "$(BACKUPDEV)" \
	  --junitxml=$(HIL_JUNIT) $(PYTEST_ARGS)
