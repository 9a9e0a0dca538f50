"""What is true of the market, whoever trades in it: KRX's rules (tick sizes, price limits) and
its calendar and phases. A Django app (market/apps.py)."""
