"""Throughput and peak memory of the dataset converters on large synthetic raw files.

For each format a file of ``--lines`` raw lines (default 2,000,000) shaped like the real dump
(same keys, key order and typical text lengths) is generated, then converted in a fresh
subprocess. Reported per conversion, from that subprocess's ``os.wait4`` rusage: raw lines per
CPU second (user + system, so other load on the machine does not skew it), lines per wall
second, and peak RSS. The files are generated in another subprocess, so that this process stays
small (a child's peak RSS counts its parent's at fork time). For scale on the machine at hand,
``json.loads`` alone is timed on the first 100,000 lines of each file. Run it smaller with
``--lines 200000``.

    python bench/bench_converters.py [--lines N] [--formats amazon-2018 yelp ...] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORDS = (
    "the book story great read author characters good love first time really would "
    "series recommend plot well much ending life written loved could enjoyed one"
).split()


def _texts(rng: random.Random, n: int = 4096) -> list[str]:
    """A pool of review-like texts, 40-1,500 characters (mean about 600)."""
    out = []
    for _ in range(n):
        size = int(rng.lognormvariate(6.1, 0.7))
        words: list[str] = []
        while sum(map(len, words)) + len(words) < min(max(size, 40), 1500):
            words.append(rng.choice(WORDS))
        out.append(" ".join(words).capitalize() + ".")
    return out


def _ids(rng: random.Random, n: int, make: Callable[[random.Random], str]) -> list[str]:
    return [make(rng) for _ in range(n)]


def _alnum(rng: random.Random, size: int, first: str = "") -> str:
    return first + "".join(
        rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(size - len(first))
    )


RATINGS = (1, 2, 3, 4, 4, 5, 5, 5)  # about 25% false positives


def amazon_2018(rng: random.Random, n: int) -> Iterator[str]:
    users = _ids(rng, max(n // 20, 10), lambda r: _alnum(r, 14, "A"))
    items = _ids(rng, max(n // 30, 10), lambda r: f"{r.randrange(10**9):09d}{r.choice('0X')}")
    texts = _texts(rng)
    for k in range(n):
        yield (
            f'{{"overall": {rng.choice(RATINGS)}.0, "verified": true, "reviewTime": '
            f'"03 30, 2005", "reviewerID": "{rng.choice(users)}", "asin": "{rng.choice(items)}", '
            f'"style": {{"Format:": " Hardcover"}}, "reviewerName": "Reader {k}", '
            f'"reviewText": "{rng.choice(texts)}", "summary": "{rng.choice(texts)[:60]}", '
            f'"unixReviewTime": {1111622400 + 86400 * (k % 5000)}}}\n'
        )


def amazon_2014(rng: random.Random, n: int) -> Iterator[str]:
    users = _ids(rng, max(n // 20, 10), lambda r: _alnum(r, 14, "A"))
    items = _ids(rng, max(n // 30, 10), lambda r: f"{r.randrange(10**10):010d}")
    texts = _texts(rng)
    for k in range(n):
        yield (
            f'{{"reviewerID": "{rng.choice(users)}", "asin": "{rng.choice(items)}", '
            f'"reviewerName": "Reader {k}", "helpful": [0, 0], "reviewText": '
            f'"{rng.choice(texts)}", "overall": {rng.choice(RATINGS)}.0, "summary": '
            f'"{rng.choice(texts)[:60]}", "unixReviewTime": {1111622400 + 86400 * (k % 5000)}, '
            f'"reviewTime": "03 30, 2005"}}\n'
        )


def amazon_2023(rng: random.Random, n: int) -> Iterator[str]:
    users = _ids(rng, max(n // 20, 10), lambda r: _alnum(r, 28, "A"))
    items = _ids(rng, max(n // 30, 10), lambda r: _alnum(r, 10, "B0"))
    texts = _texts(rng)
    for k in range(n):
        item = rng.choice(items)
        yield (
            f'{{"rating": {rng.choice(RATINGS)}.0, "title": "{rng.choice(texts)[:50]}", '
            f'"text": "{rng.choice(texts)}", "images": [], "asin": "{item}", '
            f'"parent_asin": "{item}", "user_id": "{rng.choice(users)}", '
            f'"timestamp": {1588687728923 + 1000 * k + k % 7}, "helpful_vote": {k % 7}, '
            f'"verified_purchase": true}}\n'
        )


def yelp_business(rng: random.Random, n: int) -> Iterator[str]:
    cats = [
        "Restaurants, Pizza",
        "Bars, Nightlife",
        "Shopping, Restaurant Supplies",
        "Juice Bars & Smoothies, Food",
        "Hair Salons, Beauty & Spas",
        "Food, Restaurants",
    ]
    for k in range(n):
        yield (
            f'{{"business_id":"{_biz(k)}","name":"Place {k}","address":"1 Main St",'
            f'"city":"Phoenix","state":"AZ","postal_code":"85001","latitude":33.4,'
            f'"longitude":-112.0,"stars":4.0,"review_count":10,"is_open":1,'
            f'"attributes":{{"WiFi":"u\'free\'"}},"categories":"{rng.choice(cats)}",'
            f'"hours":null}}\n'
        )


def _biz(k: int) -> str:
    return f"-{k:021d}"  # Yelp ids are 22 characters and may start with "-"


def yelp_review(rng: random.Random, n: int) -> Iterator[str]:
    users = _ids(rng, max(n // 20, 10), lambda r: _alnum(r, 22))
    texts = _texts(rng)
    businesses = max(n // 40, 10)
    for k in range(n):
        date = f"20{10 + k % 12}-{1 + k % 12:02d}-{1 + k % 28:02d} {k % 24:02d}:{k % 60:02d}:07"
        yield (
            f'{{"review_id":"{_alnum(rng, 22)}","user_id":"{rng.choice(users)}",'
            f'"business_id":"{_biz(rng.randrange(businesses))}","stars":{rng.choice(RATINGS)}.0,'
            f'"useful":0,"funny":0,"cool":0,"text":"{rng.choice(texts)}","date":"{date}"}}\n'
        )


def adressa(rng: random.Random, n: int) -> Iterator[str]:
    users = _ids(
        rng, max(n // 10, 10), lambda r: f"cx:{_alnum(r, 16).lower()}:{_alnum(r, 13).lower()}"
    )
    docs = [f"{rng.randrange(16**40):040x}" for _ in range(max(n // 300, 10))]
    texts = _texts(rng)
    for k in range(n):
        active = "" if k % 5 == 0 else f'"activeTime":{rng.randrange(1, 120)},'
        event = (
            f'{{"eventId":{1100000000 + k},"city":"trondheim",{active}'
            f'"url":"http://adressa.no/nyheter/{k}.html","referrerHostClass":"internal",'
            f'"region":"sor-trondelag","time":{1483225200 + k % 604800},'
            f'"userId":"{rng.choice(users)}","sessionStart":false,"deviceType":"Mobile",'
            f'"sessionStop":false,"country":"no","os":"iPhone OS"'
        )
        if k % 2:  # a front-page event: no article id
            yield event + "}\n"
            continue
        yield event + (
            f',"id":"{rng.choice(docs)}","canonicalUrl":"http://www.adressa.no/nyheter/{k}.html",'
            f'"publishtime":"2016-12-31T13:51:54.000Z","title":"{rng.choice(texts)[:80]}",'
            f'"category1":"nyheter","profile":[{{"item":"trondheim","groups":[{{"count":1,'
            f'"group":"location","weight":0.25}}]}},{{"item":"{rng.choice(WORDS)}","groups":'
            f'[{{"count":2,"group":"concept","weight":0.5}}]}}],'
            f'"keywords":"{rng.choice(texts)[:300]}"}}\n'
        )


def amazon_2018_csv(rng: random.Random, n: int) -> Iterator[str]:
    for line in amazon_2018(rng, n):
        d = json.loads(line)
        yield f"{d['asin']},{d['reviewerID']},{d['overall']},{d['unixReviewTime']}\n"


# name: (generator, converter source, extra CLI options)
BENCHES: dict[str, tuple[Callable[[random.Random, int], Iterator[str]], str, list[str]]] = {
    "amazon-2014": (amazon_2014, "amazon", []),
    "amazon-2018": (amazon_2018, "amazon", []),
    "amazon-2023": (amazon_2023, "amazon", []),
    "amazon-2018-csv": (amazon_2018_csv, "amazon", ["--format", "2018-csv"]),
    "yelp": (yelp_review, "yelp", ["--business", "{business}"]),
    "adressa": (adressa, "adressa", []),
}
DEFAULT = ["amazon-2014", "amazon-2018", "amazon-2023", "yelp", "adressa"]

CHILD = """
import sys
sys.path.insert(0, {root!r})
from dataset_converters import cli
sys.exit(cli.main({argv!r}))
"""


def _write(path: Path, lines: Iterator[str]) -> int:
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for chunk in iter(lambda: [line for _, line in zip(range(65536), lines)], []):
            f.writelines(chunk)
            n += len(chunk)
    return n


def generate(name: str, n: int, work: Path, seed: int) -> None:
    """Write ``work/NAME.raw`` (and, for Yelp, ``work/business.json``); print the baseline."""
    rng = random.Random(seed)
    _write(work / f"{name}.raw", BENCHES[name][0](rng, n))
    if BENCHES[name][1] == "yelp":
        _write(work / "business.json", yelp_business(rng, max(n // 40, 10)))
    baseline = float("nan") if name.endswith("csv") else _json_baseline(work / f"{name}.raw")
    print(json.dumps({"json_loads_lines_per_s": baseline}))


def _json_baseline(path: Path, n: int = 100_000) -> float:
    """Lines per CPU second of a bare ``json.loads`` loop: the machine's yardstick."""
    with open(path, "rb") as f:
        lines = [line for _, line in zip(range(n), f)]
    start = time.process_time()
    for line in lines:
        json.loads(line)
    return len(lines) / max(time.process_time() - start, 1e-9)


def run_one(name: str, n: int, work: Path, seed: int) -> dict[str, object]:
    _, source, extra = BENCHES[name]
    generated = subprocess.run(
        [
            sys.executable,
            __file__,
            "--generate",
            name,
            "--lines",
            str(n),
            "--seed",
            str(seed),
            "--keep",
            str(work),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    baseline = json.loads(generated.stdout)["json_loads_lines_per_s"]
    raw = work / f"{name}.raw"
    extra = [a.replace("{business}", str(work / "business.json")) for a in extra]
    argv = [
        source,
        "--input",
        str(raw),
        "--output-dir",
        str(work / "out"),
        "--name",
        name,
        "--force",
        *extra,
    ]
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(root=str(ROOT), argv=argv)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read()  # type: ignore[union-attr]
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{name}: conversion failed:\n{err}")
    stats = json.loads((work / "out" / name / f"{name}.stats.json").read_text())
    lines, size = stats["lines"], raw.stat().st_size
    raw.unlink()
    cpu = usage.ru_utime + usage.ru_stime
    return {
        "format": name,
        "lines": lines,
        "MB": size / 1e6,
        "cpu_s": cpu,
        "wall_s": wall,
        "lines_per_cpu_s": lines / cpu,
        "lines_per_wall_s": lines / wall,
        "peak_rss_MB": usage.ru_maxrss / 1024,  # kilobytes on Linux
        "json_loads_lines_per_s": baseline,
        "interactions": stats["interactions"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=2_000_000, help="raw lines per format")
    parser.add_argument("--formats", nargs="+", choices=list(BENCHES), default=DEFAULT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="work folder to keep (default: a temp dir)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--generate", choices=list(BENCHES), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.generate:  # the generator subprocess
        generate(args.generate, args.lines, args.keep, args.seed)
        return 0
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench_converters."))
    work.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        if not args.json:
            print(
                f"{'format':16} {'lines':>10} {'MB':>6} {'CPU s':>7} {'lines/CPU s':>12} "
                f"{'lines/wall s':>13} {'peak RSS MB':>12} {'json.loads/s':>13}"
            )
        for name in args.formats:
            r = run_one(name, args.lines, work, args.seed)
            results.append(r)
            if not args.json:
                print(
                    f"{r['format']:16} {r['lines']:>10,} {r['MB']:>6.0f} {r['cpu_s']:>7.2f} "
                    f"{r['lines_per_cpu_s']:>12,.0f} {r['lines_per_wall_s']:>13,.0f} "
                    f"{r['peak_rss_MB']:>12.1f} {r['json_loads_lines_per_s']:>13,.0f}",
                    flush=True,
                )
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
