"""`python -m devstack up|down|status|fetch|restart-broker`."""

from devstack.cli import main

raise SystemExit(main())
