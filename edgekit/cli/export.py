"""CLI commands (being written)."""


def register(main):
    pass
