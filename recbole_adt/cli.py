"""Command line: train and test a recommender with Adaptive Denoising Training.

    python run_recbole_adt.py --model=GMF --config_files=properties/tce.yaml
    python run_recbole_adt.py --model=NeuMF --config_files=properties/rce.yaml --seeds=1,2,3

With no dataset given, runs on MovieLens-100K (bundled with RecBole, rating < 3 = false positive).
Any RecBole setting can be added as --key=value, e.g. --epochs=5 --dataset=yelp --data_path=out/.
"""

from __future__ import annotations

import argparse

from recbole_adt.quick_start import run_recbole_adt, run_seeds


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        allow_abbrev=False,  # --seed (a RecBole setting) must not read as --seeds
        description=__doc__.splitlines()[0],
        epilog="Other --key=value options are RecBole settings (e.g. --epochs=5 --topk=[50,100]).",
    )
    parser.add_argument("--model", "-m", default="GMF", help="GMF, NeuMF, CDAE or a RecBole model")
    parser.add_argument("--dataset", "-d", default=None, help="default: ml-100k-fp (embedded)")
    parser.add_argument("--config_files", default=None, help="space-separated yaml files")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds, one run per seed")
    # The rest (--epochs=5, ...) stays in sys.argv, where RecBole's Config reads it.
    args, rest = parser.parse_known_args(argv)
    if args.seeds and any(arg.startswith("--seed=") for arg in rest):
        parser.error("--seed and --seeds together: the command line --seed would win every run")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    config_files = args.config_files.split() if args.config_files else None
    if args.seeds is None:
        run_recbole_adt(args.model, args.dataset, config_files)
        return
    seeds = [int(seed) for seed in args.seeds.split(",")]
    outcome = run_seeds(seeds, args.model, args.dataset, config_files)
    print(f"test result of {args.model} over seeds {seeds} (mean ± sample std):")
    print_summary(outcome["test_summary"])
    for key, title in (("group_summary_plain", "plain scores"), ("group_summary", "")):
        for group, summary in outcome.get(key, {}).items():
            if group != "overall":
                print(f" users with {group}" + (f", {title}" if title else "") + ":")
                print_summary(summary)


def print_summary(summary: dict) -> None:
    for metric, (mean, std) in summary.items():
        print(f"  {metric}: {mean:.4f} ± {std:.4f}")


if __name__ == "__main__":
    main()
