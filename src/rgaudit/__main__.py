"""``python -m rgaudit``: the same command line as the ``rgaudit`` script."""

from rgaudit.cli import main

if __name__ == "__main__":
    main()
