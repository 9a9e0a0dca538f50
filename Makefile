PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: help venv test demo run bench clean

help:
	@echo "make demo   - the ledger refusing an oversell, on the embedded default (SQLite)"
	@echo "make test   - the test suite on throw-away PostgreSQL and Redis"
	@echo "make run    - the admin on http://127.0.0.1:8000/admin/ (embedded default)"
	@echo "make bench  - benchmarks on throw-away PostgreSQL and Redis"

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt scripts/bootstrap-venv.sh
	scripts/bootstrap-venv.sh $(PYTHON) $(VENV)
	@touch $@

# Through PgBouncer in transaction pooling, as deployed (AEGIS_PGBOUNCER=0: straight to PostgreSQL).
test: venv
	AEGIS_PGBOUNCER=$${AEGIS_PGBOUNCER:-1} scripts/with-services.sh $(BIN)/python -m pytest $(PYTEST_ARGS)

# The embedded default: no server, a fresh SQLite file, tasks run in-process.
demo: venv
	@mkdir -p var && rm -f var/demo.sqlite3*
	env -u REDIS_URL AEGIS_AUTO_SUBMIT=0 DATABASE_URL=sqlite:///$(CURDIR)/var/demo.sqlite3 \
		$(BIN)/python manage.py demo

run: venv
	env -u REDIS_URL $(BIN)/python manage.py migrate -v0
	env -u REDIS_URL $(BIN)/python manage.py runserver 127.0.0.1:8000

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis staticfiles

# Benchmarks print figures beside a baseline from the same run; they never fail on a time.
bench: venv
	AEGIS_PGBOUNCER=$${AEGIS_PGBOUNCER:-1} AEGIS_PGBOUNCER_CHECK_DELAY=30 scripts/with-services.sh $(BIN)/python -m bench.run
