PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: help venv lint test demo run bench drill soak clean

help:
	@echo "make demo   - a simulated trading day against the KIS simulator (throw-away PostgreSQL)"
	@echo "make test   - the test suite on throw-away PostgreSQL and Redis"
	@echo "make run    - the admin on http://127.0.0.1:8000/admin/ (PostgreSQL data in var/pg)"
	@echo "make bench  - benchmarks on throw-away PostgreSQL and Redis"
	@echo "make drill  - the fault drill: the process set, faults, invariants (drill/README.md)"
	@echo "make soak   - a whole trading day and the next open on a UTC server's clock"

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt scripts/bootstrap-venv.sh
	scripts/bootstrap-venv.sh $(PYTHON) $(VENV)
	@touch $@

# The code's own checks: ruff's lint and format (ruff.toml), the apps' layering (.importlinter:
# no app imports one above it, the simulator only KIS's protocol), types (mypy.ini). mypy reads
# the settings of the embedded default, whatever the environment says.
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	env -u DATABASE_URL -u REDIS_URL $(BIN)/mypy

# Through PgBouncer in transaction pooling, as deployed (AEGIS_PGBOUNCER=0: straight to PostgreSQL).
# AEGIS_TEST_TOOLS=1: the desk's browser test (headless Chromium) and gettext are installed.
test: venv lint
	AEGIS_PGBOUNCER=$${AEGIS_PGBOUNCER:-1} AEGIS_TEST_TOOLS=$${AEGIS_TEST_TOOLS:-1} scripts/with-services.sh $(BIN)/python -m pytest $(PYTEST_ARGS)

# A simulated trading day on a throw-away PostgreSQL, tasks in-process (no Redis), the KIS
# simulator on loopback. DEMO_ARGS="--speed 1" plays it at the real pace (default 10x).
# It runs in English, as the docs are written; AEGIS_LANGUAGE=ko make demo runs it in Korean.
DEMO_ARGS ?=
demo: venv
	@mkdir -p var
	AEGIS_LANGUAGE=$${AEGIS_LANGUAGE:-en} scripts/with-services.sh env -u REDIS_URL -u DATABASE_DIRECT_URL \
		$(BIN)/python manage.py demo --out var/demo $(DEMO_ARGS)

# The admin on a PostgreSQL whose data stays in var/pg; the first run asks for an admin user.
run: venv
	@mkdir -p var
	AEGIS_PG_DATA=$(CURDIR)/var/pg scripts/with-services.sh env -u REDIS_URL sh -c '\
		$(BIN)/python manage.py migrate -v0 && \
		{ $(BIN)/python manage.py shell -c "from django.contrib.auth.models import User; \
			raise SystemExit(not User.objects.filter(is_superuser=True).exists())" \
			|| $(BIN)/python manage.py createsuperuser; } && \
		$(BIN)/python manage.py runserver 127.0.0.1:8000'

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis staticfiles

# Benchmarks print figures beside a baseline from the same run; they never fail on a time.
# Their PostgreSQL flushes every commit to disk, as in production (the tests' does not).
bench: venv
	AEGIS_PGBOUNCER=$${AEGIS_PGBOUNCER:-1} AEGIS_PGBOUNCER_CHECK_DELAY=30 AEGIS_PG_DURABLE=1 \
		scripts/with-services.sh $(BIN)/python -m bench.run

# The fault drill (drill/README.md): the production process set against the simulator, faults
# injected, invariants checked; drill/results.json and results.md. DRILL_ARGS="--only a,b".
DRILL_ARGS ?=
drill: venv
	AEGIS_PGBOUNCER=$${AEGIS_PGBOUNCER:-1} scripts/with-services.sh $(BIN)/python -m drill $(DRILL_ARGS)

# A whole trading day and the next open (drill/soak.py): the process set on one clock started in
# UTC, the simulator keeping KRX's day; soak/results.json.
soak: venv
	AEGIS_PGBOUNCER=$${AEGIS_PGBOUNCER:-1} scripts/with-services.sh $(BIN)/python -m drill.soak
