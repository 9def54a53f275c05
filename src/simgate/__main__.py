"""`python -m simgate` is the `simgate` command."""

from simgate.cli import main

main()
