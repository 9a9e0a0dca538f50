"""The deployment files, read as data: docker-compose.yml and PgBouncer's configuration.

No Docker and no database: these tests parse the files and check the properties the stack relies
on (which process talks to PostgreSQL through the transaction pooler and which directly, pool
sizes, secrets only from the environment, nothing published beyond loopback).
"""

import configparser
import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
PGBOUNCER_INI = ROOT / "deploy" / "pgbouncer" / "pgbouncer.ini"

IMAGE = "aegis:latest"
APP_SERVICES = (
    "migrate",
    "reconcile",
    "web",
    "worker",
    "worker-execution",
    "beat",
    "flower",
    "listener",
    "fills",
    "pricesync",
)
# The one-shot services end; every other app service runs for good and has a healthcheck.
ONE_SHOT = ("migrate", "reconcile")
# Session features (LISTEN, DDL in migrations) need a real PostgreSQL session; the two processes
# on the latency-critical paths keep their hot statements prepared, which the pooler cannot carry.
DIRECT_SERVICES = ("migrate", "listener", "worker-execution", "pricesync")
POOLED_SERVICES = ("reconcile", "web", "worker", "beat", "flower")
KIS_VARIABLES = (
    "KIS_ENV",
    "KIS_ACCOUNT",
    "KIS_QUERY_APP_KEY",
    "KIS_QUERY_APP_SECRET",
    "KIS_ORDER_APP_KEY",
    "KIS_ORDER_APP_SECRET",
    "KIS_HTS_ID",
    "KIS_BASE_URL",
    "KIS_WS_URL",
)
SECRET_NAME = re.compile(r"SECRET|PASSWORD|_KEY$|AUTH|TOKEN")
# A whole value that is one variable, with no default: ${NAME}, ${NAME:?msg} or ${NAME?msg}.
BARE_REFERENCE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?\?[^}]*)?\}")

# A deployer's shell: the required variables set, nothing else.
HOST_ENV = {
    "POSTGRES_PASSWORD": "password-from-the-host",
    "REDIS_PASSWORD": "redis-password-from-the-host",
    "SECRET_KEY": "secret-key-from-the-host",
    "FLOWER_BASIC_AUTH": "admin:from-the-host",
}


# --- compose's interpolation, the part these files use -----------------------------------------

_INTERPOLATION = re.compile(
    r"\$\$"
    r"|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


class MissingVariable(Exception):
    pass


def interpolate(value, env):
    """Resolve $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?msg}, ${VAR?msg} and $$."""

    def substitute(match):
        if match.group(0) == "$$":
            return "$"
        name = match.group("name") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        unset_or_empty = not env.get(name)
        if op in (":-", "-"):
            use_default = unset_or_empty if op == ":-" else name not in env
            return arg if use_default else env[name]
        if op in (":?", "?"):
            if unset_or_empty if op == ":?" else name not in env:
                raise MissingVariable(f"{name}: {arg}")
            return env[name]
        return env.get(name, "")

    return _INTERPOLATION.sub(substitute, value)


def test_interpolation_helper_behaves_like_compose():
    assert interpolate("${A:-d}", {"A": ""}) == "d"
    assert interpolate("${A-d}", {"A": ""}) == ""
    assert interpolate("${A-d}", {}) == "d"
    assert interpolate("x${A}y$A", {"A": "1"}) == "x1y1"
    assert interpolate("$${A}", {"A": "1"}) == "${A}"
    with pytest.raises(MissingVariable):
        interpolate("${A:?set A}", {"A": ""})
    assert interpolate("${A?set A}", {"A": ""}) == ""


# --- loading -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def services():
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    return compose["services"]


@pytest.fixture(scope="module")
def pgbouncer_ini():
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(PGBOUNCER_INI.read_text())
    return parser


def environment(service):
    """A service's environment as a dict; list entries without '=' pass through (None)."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in raw)
    return dict(raw)


def resolved_environment(service, env=HOST_ENV):
    return {
        key: None if value is None else interpolate(str(value), env)
        for key, value in environment(service).items()
    }


def command_args(service):
    command = service.get("command")
    return shlex.split(command) if isinstance(command, str) else [str(arg) for arg in command]


def libpq_params(connstr):
    return dict(pair.split("=", 1) for pair in connstr.split())


# --- one image ---------------------------------------------------------------------------------


def test_every_app_service_runs_the_one_image(services):
    for name in APP_SERVICES:
        assert name in services, f"service {name} is missing"
        service = services[name]
        build = service.get("build")
        context = build.get("context") if isinstance(build, dict) else build
        assert service.get("image") == IMAGE, name
        assert context in (".", "./"), name
    assert {services[name]["image"] for name in APP_SERVICES} == {IMAGE}


def test_app_services_wait_for_migrations(services):
    for name in APP_SERVICES:
        depends_on = services[name].get("depends_on") or {}
        if name == "migrate":
            assert depends_on.get("postgres", {}).get("condition") == "service_healthy"
            assert "pgbouncer" not in depends_on
            continue
        assert isinstance(depends_on, dict), f"{name}: depends_on needs conditions"
        condition = depends_on.get("migrate", {}).get("condition")
        assert condition == "service_completed_successfully", name


# --- which process goes through the pooler ------------------------------------------------------


@pytest.mark.parametrize("name", DIRECT_SERVICES)
def test_session_bound_processes_connect_directly(services, name):
    env = resolved_environment(services[name])
    for variable in ("DATABASE_URL", "DATABASE_DIRECT_URL"):
        url = urlsplit(env[variable])
        assert (url.hostname, url.port) == ("postgres", 5432), f"{name} {variable}"
    assert env.get("DATABASE_POOLING") != "pgbouncer", name


@pytest.mark.parametrize("name", POOLED_SERVICES)
def test_pooled_processes_go_through_pgbouncer(services, pgbouncer_ini, name):
    env = resolved_environment(services[name])
    pooled = urlsplit(env["DATABASE_URL"])
    assert pooled.hostname == "pgbouncer", name
    assert pooled.port == pgbouncer_ini.getint("pgbouncer", "listen_port"), name
    assert pooled.path.lstrip("/") in pgbouncer_ini["databases"], name
    # The settings turn off what transaction pooling cannot carry only when told.
    assert env["DATABASE_POOLING"] == "pgbouncer", name
    direct = urlsplit(env["DATABASE_DIRECT_URL"])
    assert (direct.hostname, direct.port) == ("postgres", 5432), name


def test_only_the_hot_processes_bound_their_lock_waits(services):
    """pricesync and worker-execution, each a few threads that serve every trade or intent,
    give up on a lock left held after a bound; migrate, whose statements may rightly run long,
    and the pooled processes (PgBouncer refuses connection options) do not."""
    bounded = {
        name
        for name, service in services.items()
        if resolved_environment(service).get("DATABASE_LOCK_TIMEOUT_MS")
    }
    assert bounded == {"pricesync", "worker-execution"}
    for name in bounded:
        env = resolved_environment(services[name])
        assert env.get("DATABASE_POOLING") != "pgbouncer", name
        assert (
            0 < int(env["DATABASE_LOCK_TIMEOUT_MS"]) < int(env["DATABASE_STATEMENT_TIMEOUT_MS"])
        ), name


# --- PgBouncer ----------------------------------------------------------------------------------


def test_pgbouncer_pools_as_the_review_asks(pgbouncer_ini):
    section = pgbouncer_ini["pgbouncer"]
    assert section["pool_mode"] == "transaction"
    assert section.getint("max_client_conn") == 1000
    assert section.getint("default_pool_size") == 20
    assert section.getint("reserve_pool_size") == 5


def test_pgbouncer_serves_the_postgres_service(services, pgbouncer_ini):
    target = libpq_params(pgbouncer_ini["databases"]["aegis"])
    assert target["host"] == "postgres" and target["host"] in services
    assert int(target.get("port", 5432)) == 5432

    mounts = {}
    for volume in services["pgbouncer"].get("volumes", []):
        if isinstance(volume, str):
            source, mount_target = volume.split(":")[:2]
        else:
            source, mount_target = volume["source"], volume["target"]
        mounts[mount_target] = source
    assert Path(ROOT, mounts["/etc/pgbouncer/pgbouncer.ini"]).resolve() == PGBOUNCER_INI
    assert pgbouncer_ini["pgbouncer"]["auth_file"] in mounts


# --- secrets ------------------------------------------------------------------------------------


def test_flower_always_runs_behind_basic_auth(services):
    raw = environment(services["flower"]).get("FLOWER_BASIC_AUTH")
    assert raw is not None, "flower has no FLOWER_BASIC_AUTH"
    # Required: compose refuses to start rather than run Flower open.
    with pytest.raises(MissingVariable):
        interpolate(raw, {})
    assert interpolate(raw, HOST_ENV) == HOST_ENV["FLOWER_BASIC_AUTH"]


def test_required_secrets_stop_compose_when_unset(services):
    raw_secret_key = environment(services["web"])["SECRET_KEY"]
    raw_password = environment(services["postgres"])["POSTGRES_PASSWORD"]
    raw_redis_password = environment(services["redis"])["REDIS_PASSWORD"]
    for raw in (raw_secret_key, raw_password, raw_redis_password):
        with pytest.raises(MissingVariable):
            interpolate(raw, {})


def test_no_literal_secret_in_the_compose_file(services):
    checked = set()
    for name, service in services.items():
        for key, value in environment(service).items():
            if SECRET_NAME.search(key):
                checked.add(key)
                # None: passed through from the host unchanged.
                assert value is None or BARE_REFERENCE.fullmatch(str(value)), f"{name} {key}"
            if value is not None and "://" in str(value):
                password = urlsplit(str(value)).password
                assert password is None or BARE_REFERENCE.fullmatch(password), f"{name} {key}"
    assert checked >= {
        "SECRET_KEY",
        "POSTGRES_PASSWORD",
        "REDIS_PASSWORD",
        "FLOWER_BASIC_AUTH",
        "KIS_QUERY_APP_KEY",
        "KIS_QUERY_APP_SECRET",
        "KIS_ORDER_APP_KEY",
        "KIS_ORDER_APP_SECRET",
    }


@pytest.mark.parametrize("name", APP_SERVICES)
def test_kis_settings_pass_through_from_the_host(services, name):
    env = environment(services[name])
    for variable in KIS_VARIABLES:
        assert variable in env, f"{name} {variable}"
        value = env[variable]
        # No default in the file: unset on the host stays unset, and the settings decide.
        assert value is None or value == f"${{{variable}}}", f"{name} {variable}"


def test_redis_asks_for_the_password_from_the_environment(services):
    redis = services["redis"]
    assert environment(redis)["REDIS_PASSWORD"].startswith("${REDIS_PASSWORD:?")
    script = command_args(redis)
    assert script[:2] == ["sh", "-c"]
    # requirepass from the environment ($$: compose passes a literal $ to the shell), into a
    # file only the server's user reads, never on redis-server's command line.
    assert "requirepass" in script[2] and '"$$REDIS_PASSWORD"' in script[2]
    assert "umask 077" in script[2]
    server = script[2].split("exec ", 1)[1]
    assert server.startswith("redis-server ") and "REDIS_PASSWORD" not in server
    assert redis.get("user") == "redis"
    check = " ".join(redis["healthcheck"]["test"])
    assert 'REDISCLI_AUTH="$$REDIS_PASSWORD"' in check and "-a " not in check


@pytest.mark.parametrize("name", APP_SERVICES)
def test_every_service_reaches_redis_with_the_password(services, name):
    url = urlsplit(resolved_environment(services[name])["REDIS_URL"])
    assert (url.hostname, url.port, url.password) == ("redis", 6379, HOST_ENV["REDIS_PASSWORD"]), (
        name
    )
    assert BARE_REFERENCE.fullmatch(urlsplit(environment(services[name])["REDIS_URL"]).password)


# --- exposure -----------------------------------------------------------------------------------


def test_published_ports_bind_loopback_only(services):
    published = {}
    for name, service in services.items():
        for port in service.get("ports", []):
            if isinstance(port, dict):
                host_ip, container_port = port.get("host_ip"), int(port["target"])
            else:
                parts = str(port).split(":")
                host_ip = parts[0] if len(parts) == 3 else None
                container_port = int(parts[-1].split("/")[0])
            assert host_ip == "127.0.0.1", f"{name} publishes {port} beyond loopback"
            published.setdefault(name, set()).add(container_port)
    assert published == {"web": {8000}, "flower": {5555}}


# --- processes ----------------------------------------------------------------------------------


def test_the_workers_consume_every_routed_queue_once(services):
    consumed = []
    for name in ("worker", "worker-execution"):
        args = command_args(services[name])
        assert args[:4] == ["celery", "-A", "aegis", "worker"]
        consumed += args[args.index("-Q") + 1].split(",")
    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    assert sorted(consumed) == sorted(routed | {settings.CELERY_TASK_DEFAULT_QUEUE})


# --- the whole trading stack, watched ----------------------------------------------------------


def test_the_price_feed_starts_with_the_stack(services):
    """`docker compose up` starts everything that trades: no service waits for a profile (without
    pricesync no stop, trailing stop or GAP_DOWN would ever see a price)."""
    assert [name for name, service in services.items() if service.get("profiles")] == []


@pytest.mark.parametrize("name", [n for n in APP_SERVICES if n not in ONE_SHOT])
def test_every_running_app_service_has_a_healthcheck_on_its_health(services, name):
    check = services[name].get("healthcheck") or {}
    test = " ".join(check.get("test") or [])
    assert re.search(r"http://127\.0\.0\.1:\d+/health", test), name
    port = int(re.search(r"127\.0\.0\.1:(\d+)/", test).group(1))
    if name in ("web", "flower"):
        assert port == {"web": 8000, "flower": 5555}[name]
    else:  # the process's own /health on AEGIS_OPS_PORT (core/metrics.py)
        assert str(port) == str(resolved_environment(services[name])["AEGIS_OPS_PORT"]), name
