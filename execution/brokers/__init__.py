"""The broker this process talks to: one KIS client per process, built from settings."""

import functools


@functools.cache
def get_broker():
    from .kis.client import KisClient
    from .kis.config import KisConfig
    from .kis.vault import DatabaseVault

    return KisClient(KisConfig.from_settings(), vault=DatabaseVault())
