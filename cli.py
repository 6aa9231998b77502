"""Run kamflow from a checkout: `python cli.py --help`."""

from kamflow.cli import main

if __name__ == "__main__":
    main()
