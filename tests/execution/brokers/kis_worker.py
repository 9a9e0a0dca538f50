"""Runs in a separate OS process: a KIS client of its own, sharing only Redis with the others."""

import os
import time


def client_for(sim: dict, rate: int, *, retries: int = 5, read_timeout_s: float = 5.0,
               vault=None):
    from execution.brokers.kis.client import KisClient
    from execution.brokers.kis.config import AppCredentials, KisConfig
    from execution.brokers.kis.protocol import Flavour

    app = AppCredentials(sim["appkey"], sim["appsecret"])
    return KisClient(KisConfig(
        flavour=Flavour(sim["flavour"]), base_url=sim["base_url"], ws_url=sim["ws_url"],
        cano=sim["cano"], acnt_prdt_cd=sim["acnt_prdt_cd"], query_app=app, order_app=app,
        hts_id=sim["hts_id"], rate_per_second=rate, rate_limit_retries=retries,
        read_timeout_s=read_timeout_s), vault=vault)


def price_calls(sim: dict, rate: int, calls: int, start_at: float) -> dict:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aegis.settings")
    import django

    django.setup()
    client = client_for(sim, rate)
    while time.time() < start_at:  # start together
        time.sleep(0.001)
    return {"prices": [client.price("005930").price for _ in range(calls)]}
