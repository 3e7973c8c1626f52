"""`python -m arraynet.cli ...`: the same as the `arraynet` command."""

from arraynet.cli import main

main()
