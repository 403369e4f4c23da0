"""Command-line subcommands, one module per group; each exposes ``register(subparsers)``."""
