"""Human-readable sizes, one definition for every message and table."""


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def freed_bytes(n: float, at_least: bool = False) -> str:
    """Bytes freed as a message shows them: "≥ N" when the figure is a lower bound (a resumed run
    whose killed attempt freed bytes it could not prove afterwards: ``RunSummary.bytes_freed_at_least``)."""
    return ("≥ " if at_least else "") + human_bytes(n)
