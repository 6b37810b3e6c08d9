"""`python -m localrun`: the main job (see localrun/main.py)."""

from localrun.main import main

raise SystemExit(main())
