"""What is true of the market, whoever trades in it: KRX's rules (tick sizes, price limits), its
calendar and phases, and, as a Django app (market/apps.py), each symbol's best price with its hot
cache, the calendar's special days, and the reads of a symbol's market before a pick is routed."""
