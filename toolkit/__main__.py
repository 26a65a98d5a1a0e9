"""``python -m toolkit`` is ``tk`` (torchrun launches workers this way)."""

from toolkit.cli import main

if __name__ == "__main__":
    main()
