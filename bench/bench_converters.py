"""Throughput and peak memory of the dataset converters on large synthetic raw files.

For each format a file of ``--lines`` raw lines (default 2,000,000) shaped like the real dump
(same keys, key order and typical text lengths) is generated, converted in a fresh subprocess,
and reported as raw lines per second and that subprocess's peak RSS (``os.wait4``'s rusage, so
the figure is per conversion). Run it smaller with ``--lines 200000``.

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
WORDS = ("the book story great read author characters good love first time really would "
         "series recommend plot well much ending life written loved could enjoyed one").split()


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
    return first + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
                           for _ in range(size - len(first)))


def amazon_2018(rng: random.Random, n: int) -> Iterator[str]:
    users = _ids(rng, max(n // 20, 10), lambda r: _alnum(r, 14, "A"))
    items = _ids(rng, max(n // 30, 10), lambda r: "%09d%s" % (r.randrange(10**9), r.choice("0X")))
    texts = _texts(rng)
    for k in range(n):
        yield (
            '{"overall": %d.0, "verified": true, "reviewTime": "03 30, 2005", "reviewerID": "%s", '
            '"asin": "%s", "style": {"Format:": " Hardcover"}, "reviewerName": "Reader %d", '
            '"reviewText": "%s", "summary": "%s", "unixReviewTime": %d}\n'
            % (rng.choice((1, 2, 3, 4, 4, 5, 5, 5)), rng.choice(users), rng.choice(items), k,
               rng.choice(texts), rng.choice(texts)[:60], 1111622400 + 86400 * (k % 5000))
        )


def amazon_2014(rng: random.Random, n: int) -> Iterator[str]:
    users = _ids(rng, max(n // 20, 10), lambda r: _alnum(r, 14, "A"))
    items = _ids(rng, max(n // 30, 10), lambda r: "%010d" % r.randrange(10**10))
    texts = _texts(rng)
    for k in range(n):
        yield (
            '{"reviewerID": "%s", "asin": "%s", "reviewerName": "Reader %d", "helpful": [0, 0], '
            '"reviewText": "%s", "overall": %d.0, "summary": "%s", "unixReviewTime": %d, '
            '"reviewTime": "03 30, 2005"}\n'
            % (rng.choice(users), rng.choice(items), k, rng.choice(texts),
               rng.choice((1, 2, 3, 4, 4, 5, 5, 5)), rng.choice(texts)[:60],
               1111622400 + 86400 * (k % 5000))
        )


def amazon_2023(rng: random.Random, n: int) -> Iterator[str]:
    users = _ids(rng, max(n // 20, 10), lambda r: _alnum(r, 28, "A"))
    items = _ids(rng, max(n // 30, 10), lambda r: _alnum(r, 10, "B0"))
    texts = _texts(rng)
    for k in range(n):
        item = rng.choice(items)
        yield (
            '{"rating": %d.0, "title": "%s", "text": "%s", "images": [], "asin": "%s", '
            '"parent_asin": "%s", "user_id": "%s", "timestamp": %d, "helpful_vote": %d, '
            '"verified_purchase": true}\n'
            % (rng.choice((1, 2, 3, 4, 4, 5, 5, 5)), rng.choice(texts)[:50], rng.choice(texts),
               item, item, rng.choice(users), 1588687728923 + 1000 * k, k % 7)
        )


def yelp_business(rng: random.Random, n: int) -> Iterator[str]:
    cats = ["Restaurants, Pizza", "Bars, Nightlife", "Shopping, Restaurant Supplies",
            "Juice Bars & Smoothies, Food", "Hair Salons, Beauty & Spas", "Food, Restaurants"]
    for k in range(n):
        yield (
            '{"business_id":"%s","name":"Place %d","address":"1 Main St","city":"Phoenix",'
            '"state":"AZ","postal_code":"85001","latitude":33.4,"longitude":-112.0,"stars":4.0,'
            '"review_count":10,"is_open":1,"attributes":{"WiFi":"u\'free\'"},"categories":"%s",'
            '"hours":null}\n' % (_biz(k), k, rng.choice(cats))
        )


def _biz(k: int) -> str:
    return ("-%021d" % k)[-22:]


def yelp_review(rng: random.Random, n: int) -> Iterator[str]:
    users = _ids(rng, max(n // 20, 10), lambda r: _alnum(r, 22))
    texts = _texts(rng)
    businesses = max(n // 40, 10)
    for k in range(n):
        yield (
            '{"review_id":"%s","user_id":"%s","business_id":"%s","stars":%d.0,"useful":0,'
            '"funny":0,"cool":0,"text":"%s","date":"20%02d-%02d-%02d %02d:%02d:%02d"}\n'
            % (_alnum(rng, 22), rng.choice(users), _biz(rng.randrange(businesses)),
               rng.choice((1, 2, 3, 4, 4, 5, 5, 5)), rng.choice(texts), 10 + k % 12,
               1 + k % 12, 1 + k % 28, k % 24, k % 60, (7 * k) % 60)
        )


def adressa(rng: random.Random, n: int) -> Iterator[str]:
    users = _ids(rng, max(n // 10, 10), lambda r: "cx:%s:%s" % (_alnum(r, 16).lower(),
                                                                _alnum(r, 13).lower()))
    docs = ["%040x" % rng.randrange(16**40) for _ in range(max(n // 300, 10))]
    texts = _texts(rng)
    for k in range(n):
        active = "" if k % 5 == 0 else '"activeTime":%d,' % rng.randrange(1, 120)
        common = (
            '{"eventId":%d,"city":"trondheim",%s"url":"http://adressa.no/nyheter/%d.html",'
            '"referrerHostClass":"internal","region":"sor-trondelag","time":%d,"userId":"%s",'
            '"sessionStart":false,"deviceType":"Mobile","sessionStop":false,"country":"no",'
            '"os":"iPhone OS"' % (1100000000 + k, active, k, 1483225200 + k % 604800,
                                  rng.choice(users))
        )
        if k % 2:  # front-page event: no article id
            yield common + "}\n"
            continue
        yield common + (
            ',"id":"%s","canonicalUrl":"http://www.adressa.no/nyheter/%d.html",'
            '"publishtime":"2016-12-31T13:51:54.000Z","title":"%s","category1":"nyheter",'
            '"profile":[{"item":"trondheim","groups":[{"count":1,"group":"location",'
            '"weight":0.25}]},{"item":"%s","groups":[{"count":2,"group":"concept",'
            '"weight":0.5}]}],"keywords":"%s"}\n'
            % (rng.choice(docs), k, rng.choice(texts)[:80], rng.choice(WORDS),
               rng.choice(texts)[:300])
        )


def amazon_2018_csv(rng: random.Random, n: int) -> Iterator[str]:
    for line in amazon_2018(rng, n):
        d = json.loads(line)
        yield "%s,%s,%s,%d\n" % (d["asin"], d["reviewerID"], d["overall"], d["unixReviewTime"])


# name: (generator, converter source, extra options, files to generate besides the input)
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
import json, sys, time
sys.path.insert(0, {root!r})
from dataset_converters import cli
t = time.perf_counter()
code = cli.main({argv!r})
print(json.dumps({{"seconds": time.perf_counter() - t, "code": code}}), file=sys.stderr)
"""


def _write(path: Path, lines: Iterator[str]) -> int:
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for chunk in iter(lambda: [line for _, line in zip(range(65536), lines)], []):
            f.writelines(chunk)
            n += len(chunk)
    return n


def run_one(name: str, n: int, work: Path, seed: int) -> dict[str, object]:
    make, source, extra = BENCHES[name]
    rng = random.Random(seed)
    raw = work / f"{name}.raw"
    lines = _write(raw, make(rng, n))
    if source == "yelp":
        business = work / "business.json"
        _write(business, yelp_business(rng, max(n // 40, 10)))
        extra = [a.replace("{business}", str(business)) for a in extra]
    argv = [source, "--input", str(raw), "--output-dir", str(work / "out"), "--name", name,
            "--force", *extra]
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(root=str(ROOT), argv=argv)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    start = time.perf_counter()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    out, err = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    if proc.returncode != 0:
        raise SystemExit(f"{name}: conversion failed ({proc.returncode}):\n{err}")
    seconds = json.loads(err.strip().splitlines()[-1])["seconds"]
    stats = json.loads((work / "out" / name / f"{name}.stats.json").read_text())
    size = raw.stat().st_size
    raw.unlink()
    return {
        "format": name,
        "lines": lines,
        "MB": size / 1e6,
        "seconds": seconds,
        "lines_per_s": lines / seconds,
        "MB_per_s": size / 1e6 / seconds,
        "peak_rss_MB": usage.ru_maxrss / 1024,  # kilobytes on Linux
        "wall_s": wall,
        "interactions": stats["interactions"],
        "table": out.strip().splitlines()[-1],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=2_000_000, help="raw lines per format")
    parser.add_argument("--formats", nargs="+", choices=list(BENCHES), default=DEFAULT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="work folder to keep (default: a temp dir)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench_converters."))
    work.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        if not args.json:
            print(f"{'format':16} {'lines':>10} {'MB':>8} {'s':>7} {'lines/s':>10} "
                  f"{'MB/s':>7} {'peak RSS MB':>12} {'interactions':>12}")
        for name in args.formats:
            r = run_one(name, args.lines, work, args.seed)
            results.append(r)
            if not args.json:
                print(f"{r['format']:16} {r['lines']:>10,} {r['MB']:>8.0f} {r['seconds']:>7.2f} "
                      f"{r['lines_per_s']:>10,.0f} {r['MB_per_s']:>7.1f} "
                      f"{r['peak_rss_MB']:>12.1f} {r['interactions']:>12,}", flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
