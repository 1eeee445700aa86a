"""Train and test a recommender with ADT: ``python run_recbole_adt.py --help``."""

from recbole_adt.cli import main

if __name__ == "__main__":
    main()
