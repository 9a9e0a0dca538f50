"""What every app shares and no app owns: the one clock, the Redis clients, row helpers, the log
formatters and the base error. It imports no app (import-linter keeps it so)."""
