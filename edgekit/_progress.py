"""Progress reporting without printing: library code calls a callback, the CLI renders it with rich."""
from __future__ import annotations

from typing import Callable, Optional

#: ``progress(task, completed, total)``; ``total`` may be None when unknown. Library code never prints.
Progress = Callable[[str, int, Optional[int]], None]


def no_progress(task: str, completed: int, total: int | None) -> None:
    """The default callback: does nothing."""
