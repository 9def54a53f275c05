"""`python -m simgate` is the `simgate` command."""

from simgate.cli import main

if __name__ == "__main__":  # not when a child process of `simgate run` imports it
    main()
