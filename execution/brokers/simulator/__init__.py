"""A KIS-compatible broker simulator: a real REST + WebSocket server on loopback.

engine.py holds the books and the matching (pure); server.py speaks KIS's wire protocol over
aiohttp; `manage.py kis_simulator` runs it.
"""
