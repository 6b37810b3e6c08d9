"""`python -m localrun`: the main job (see localrun/experiments/main.py)."""

from localrun.experiments.main import main

if __name__ == "__main__":  # instance processes are spawned: they must not run the job again
    raise SystemExit(main())
