"""The KIS Open API client: protocol, REST, WebSocket, tokens, rate limits and circuit breakers.

It imports no app: what it has to report (a breaker's change, refused credentials) goes through
kis.client.HOOKS, which the application sets (execution/apps.py).
"""
