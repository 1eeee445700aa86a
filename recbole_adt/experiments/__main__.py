"""``python -m recbole_adt.experiments compare|grid ...`` (:mod:`recbole_adt.experiments.cli`)."""

from recbole_adt.experiments.cli import main

if __name__ == "__main__":
    main()
