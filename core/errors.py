"""The base of every error Aegis raises on purpose; each app's typed errors derive from it."""


class AegisError(Exception):
    """Base of every error Aegis raises on purpose."""
