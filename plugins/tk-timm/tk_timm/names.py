"""Regenerate ``names.txt`` from the installed timm: ``python -m tk_timm.names``."""

from __future__ import annotations

from tk_timm import NAMES


def main() -> None:
    """Write timm's ``list_models()`` (architectures, no tags) one per line."""
    import timm

    names = timm.list_models()
    NAMES.write_text("\n".join(names) + "\n")
    print(f"{NAMES}: {len(names)} models (timm {timm.__version__})")


if __name__ == "__main__":
    main()
