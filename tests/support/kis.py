"""KIS clients on the simulator for tests: `sim_dict` turns the kis_sim fixture into what
`client_for` takes. `price_calls` and `breaker_calls` run in a separate OS process: a KIS client
of its own, sharing only Redis with the others."""

import os
import time


def sim_dict(sim) -> dict:
    return {
        k: getattr(sim, k)
        for k in (
            "appkey",
            "appsecret",
            "flavour",
            "base_url",
            "ws_url",
            "cano",
            "acnt_prdt_cd",
            "hts_id",
        )
    }


def client_for(
    sim: dict, rate: int, *, retries: int = 5, read_timeout_s: float = 5.0, vault=None, **config
):
    from kis.client import KisClient
    from kis.config import AppCredentials, KisConfig
    from kis.protocol import Flavour

    app = AppCredentials(sim["appkey"], sim["appsecret"])
    return KisClient(
        KisConfig(
            flavour=Flavour(sim["flavour"]),
            base_url=sim["base_url"],
            ws_url=sim["ws_url"],
            cano=sim["cano"],
            acnt_prdt_cd=sim["acnt_prdt_cd"],
            query_app=app,
            order_app=app,
            hts_id=sim["hts_id"],
            rate_per_second=rate,
            rate_limit_retries=retries,
            read_timeout_s=read_timeout_s,
            **config,
        ),
        vault=vault,
    )


def price_calls(sim: dict, rate: int, calls: int, together) -> dict:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aegis.settings")
    import django

    django.setup()
    client = client_for(sim, rate)
    together.wait(timeout=60)  # every process set up: they begin their calls at once
    return {"prices": [client.price("005930").price for _ in range(calls)]}


def breaker_calls(sim: dict, env: dict, ready, go, seconds: float) -> dict:
    """Quotes in a loop for `seconds` through a client whose breakers open after 5 failures and
    try again after 5 s, begun once every process is set up (`ready`) and the caller says
    (`go`: barriers shared with it); what each call met."""
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aegis.settings")
    import django

    django.setup()
    from execution import alerts
    from kis.errors import KisCircuitOpen, KisError

    client = client_for(
        sim, 1000, retries=0, read_timeout_s=1.0, breaker_fail_max=5, breaker_reset_s=5.0
    )
    met = {"ok": 0, "failed": 0, "circuit_open": 0}
    ready.wait(timeout=60)
    go.wait(timeout=60)
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        try:
            client.price("005930")
            met["ok"] += 1
        except KisCircuitOpen:
            met["circuit_open"] += 1
        except KisError:
            met["failed"] += 1
        time.sleep(0.02)
    alerts.flush()
    return met
