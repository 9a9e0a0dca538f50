"""A KIS-compatible broker simulator: a real REST + WebSocket server on loopback.

engine.py holds the books and the matching (pure); server.py speaks KIS's wire protocol over
aiohttp; `python -m kis_simulator` runs it. Of Aegis it imports only the protocol (kis.protocol,
kis.crypto), the clock (core.clock) and KRX's price rules (market.krx).
"""
