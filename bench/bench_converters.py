"""Throughput and peak memory of the JSON dataset converters on synthetic raw dumps.

    python bench/bench_converters.py [--quick] [--sizes N N] [--formats amazon-2018 ...]

For each format a dump shaped like the real one (same keys, key order and typical text lengths,
about 800 bytes a line) is generated at the larger of two sizes, and its first lines make the
smaller file; each file is converted in a fresh subprocess (the CLI's ``convert``). The child
reports, for the conversion alone (not the interpreter's start-up):

- ``converter_lines_per_s``: raw lines per CPU second (user + system) at the larger size.
  Goal: >= 300,000 on one core.
- ``converter_over_json_loads``: that rate over a bare ``json.loads`` loop on the same file's
  first lines, timed right after in the same process: a yardstick that holds on a noisy machine.
- ``converter_peak_rss_mb``: its own peak RSS (``VmHWM``; ``getrusage`` of a child also counts
  the parent's memory at fork), at both sizes. Lines are streamed in 1 MiB blocks, so RSS grows
  with the distinct users and items (``converter_distinct_ids``, at both sizes), not the lines.

``figures(quick)`` returns them (``python -m bench`` collects it); ``main`` prints them as JSON.
Sizes: full 500,000 and 2,000,000 lines, ``--quick`` 40,000 and 160,000, ``BENCH_SMOKE=1`` 2,000
and 8,000.

``--compare LINES`` instead times the candidate readers alone on each format's file, each in a
fresh process: a ``json.loads`` or ``orjson.loads`` loop, msgspec decoding only the needed keys
as raw text (what the converters use), and the columnar ``polars.read_ndjson`` and
``pyarrow.json.read_json`` (whole file at once, all threads' CPU time): lines per CPU second and
peak RSS above the process's size after its imports. Readers that are not installed are left out.
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


# name: (generator, converter source, extra convert() options)
BENCHES: dict[str, tuple[Callable[[random.Random, int], Iterator[str]], str, dict[str, str]]] = {
    "amazon-2014": (amazon_2014, "amazon", {}),
    "amazon-2018": (amazon_2018, "amazon", {}),
    "amazon-2023": (amazon_2023, "amazon", {}),
    "amazon-2018-csv": (amazon_2018_csv, "amazon", {"format": "2018-csv"}),
    "yelp": (yelp_review, "yelp", {"business": "{business}"}),
    "adressa": (adressa, "adressa", {}),
}
JSON_FORMATS = ["amazon-2014", "amazon-2018", "amazon-2023", "yelp", "adressa"]
SIZES = {"full": (500_000, 2_000_000), "quick": (40_000, 160_000), "smoke": (2_000, 8_000)}
YARDSTICK_LINES = 20_000  # json.loads is timed on this many lines of each file


def _write(path: Path, lines: Iterator[str]) -> int:
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for chunk in iter(lambda: [line for _, line in zip(range(65536), lines)], []):
            f.writelines(chunk)
            n += len(chunk)
    return n


def generate(name: str, sizes: tuple[int, int], work: Path, seed: int = 0) -> list[Path]:
    """Files of ``sizes`` lines (the smaller one is the larger one's head); Yelp's business file.

    Id pools are sized for the larger file, so both files hold about the same users and items.
    """
    small, large = sorted(sizes)
    rng = random.Random(seed)
    paths = [work / f"{name}.{n}.raw" for n in (small, large)]
    _write(paths[1], BENCHES[name][0](rng, large))
    if small < large:
        with open(paths[1], "rb") as src, open(paths[0], "wb") as dst:
            dst.writelines(line for _, line in zip(range(small), src))
    if BENCHES[name][1] == "yelp":
        _write(work / "business.json", yelp_business(rng, max(large // 40, 10)))
    return paths


def _peak_rss_mb() -> float:
    """This process's own peak RSS: VmHWM on Linux, else getrusage (which counts the parent's)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource  # not on Windows

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def child(spec: dict) -> dict:
    """In a fresh process: convert one file, then time json.loads on its first lines."""
    sys.path.insert(0, str(ROOT))
    from dataset_converters import convert

    start = time.process_time()
    stats = convert(spec["source"], [spec["input"]], spec["output"], force=True, **spec["options"])
    cpu = time.process_time() - start
    peak = _peak_rss_mb()
    out = {"lines": stats["lines"], "cpu_s": cpu, "peak_rss_mb": peak}
    out["distinct_ids"] = stats["users"] + stats["items"]
    if spec["yardstick"]:
        with open(spec["input"], "rb") as f:
            lines = [line for _, line in zip(range(YARDSTICK_LINES), f)]
        start = time.process_time()
        for line in lines:
            json.loads(line)
        out["json_loads_lines_per_s"] = len(lines) / max(time.process_time() - start, 1e-9)
    return out


def _run(args: list[str]) -> dict:
    """This script in a fresh process; the JSON object it prints last."""
    done = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{args}: failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def measure(name: str, sizes: tuple[int, int], work: Path) -> dict[int, dict]:
    """One conversion per size, each in its own process; the larger one also times json.loads."""
    _, source, options = BENCHES[name]
    options = {k: v.replace("{business}", str(work / "business.json")) for k, v in options.items()}
    results = {}
    for path, n in zip(generate(name, sizes, work), sorted(sizes)):
        spec = {
            "source": source,
            "input": str(path),
            "output": str(work / "out"),
            "options": {**options, "name": name},
            "yardstick": n == max(sizes) and name in JSON_FORMATS,
        }
        results[n] = _run(["--child", json.dumps(spec)])
        path.unlink()
    return results


def figures(
    quick: bool, formats: list[str] | None = None, sizes: tuple[int, int] | None = None
) -> dict:
    """The figures of this module's docstring, per format."""
    kind = "smoke" if os.environ.get("BENCH_SMOKE") == "1" else "quick" if quick else "full"
    small, large = sorted(sizes or SIZES[kind])
    out: dict = {"size": kind, "lines": [small, large], "goal_lines_per_s": 300_000}
    rate, over, rss, ids = {}, {}, {}, {}
    work = Path(tempfile.mkdtemp(prefix="bench_converters."))
    try:
        for name in formats or JSON_FORMATS:
            result = measure(name, (small, large), work)
            big = result[large]
            rate[name] = big["lines"] / max(big["cpu_s"], 1e-9)
            if "json_loads_lines_per_s" in big:
                over[name] = rate[name] / big["json_loads_lines_per_s"]
            rss[name] = {str(n): r["peak_rss_mb"] for n, r in result.items()}
            ids[name] = {str(n): r["distinct_ids"] for n, r in result.items()}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out.update(
        converter_lines_per_s=rate,
        converter_over_json_loads=over,
        converter_peak_rss_mb=rss,
        converter_distinct_ids=ids,
    )
    return out


# The keys each JSON format's converter reads, and their types for the columnar readers.
KEYS = {
    "amazon-2014": {"reviewerID": str, "asin": str, "overall": float, "unixReviewTime": int},
    "amazon-2018": {"reviewerID": str, "asin": str, "overall": float, "unixReviewTime": int},
    "amazon-2023": {"user_id": str, "parent_asin": str, "rating": float, "timestamp": int},
    "yelp": {"user_id": str, "business_id": str, "stars": float, "date": str},
    "adressa": {"userId": str, "id": str, "time": int, "activeTime": float},
}


READERS = ("json.loads", "orjson.loads", "msgspec Raw struct", "polars.read_ndjson", "pyarrow.json")


def _reader(name: str, keys: dict[str, type]) -> Callable[[Path], int]:
    """A JSON-lines reader that pulls ``keys`` out of a file; ImportError if not installed."""
    if name in ("json.loads", "orjson.loads"):
        loads = json.loads if name == "json.loads" else __import__("orjson").loads

        def read(path: Path) -> int:
            with open(path, "rb") as f:
                return sum(1 for record in map(loads, f) if [record.get(k) for k in keys])

        return read
    if name == "msgspec Raw struct":  # what dataset_converters.jsonfields builds on
        import msgspec

        fields = [(k, msgspec.Raw, msgspec.Raw(b"")) for k in keys]
        decode = msgspec.json.Decoder(msgspec.defstruct("Needed", fields, gc=False)).decode

        def read_blocks(path: Path) -> int:
            with open(path, "rb") as f:
                blocks = iter(lambda: f.readlines(1 << 20), [])
                return sum(len(list(map(decode, lines))) for lines in blocks)

        return read_blocks
    if name == "polars.read_ndjson":  # the whole file at once, in threads
        import polars as pl

        schema = {k: {str: pl.String, int: pl.Int64, float: pl.Float64}[t] for k, t in keys.items()}
        return lambda path: pl.read_ndjson(path, schema=schema).height
    import pyarrow as pa  # pyarrow.json: the whole file at once, in threads
    import pyarrow.json as paj

    types = {str: pa.string(), int: pa.int64(), float: pa.float64()}
    options = paj.ParseOptions(
        explicit_schema=pa.schema([(k, types[t]) for k, t in keys.items()]),
        unexpected_field_behavior="ignore",
    )
    return lambda path: paj.read_json(path, parse_options=options).num_rows


def read_child(spec: dict) -> dict:
    """In a fresh process: one reader over one file; CPU time of all threads, extra peak RSS."""
    try:
        read = _reader(spec["reader"], KEYS[spec["format"]])
    except ImportError:
        return {}
    before = _rss_mb()
    start = time.process_time()
    n = read(Path(spec["input"]))
    cpu = time.process_time() - start
    return {"lines_per_s": n / cpu, "extra_peak_rss_mb": _peak_rss_mb() - before}


def compare_readers(lines: int, formats: list[str]) -> dict[str, dict[str, dict[str, float]]]:
    """Parse-only lines per CPU second and extra peak RSS of each installed JSON reader on the
    same file per format, each in a fresh process. The converters' figures are :func:`figures`."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    work = Path(tempfile.mkdtemp(prefix="bench_readers."))
    try:
        for name in formats:
            path = generate(name, (lines, lines), work)[-1]
            specs = [{"reader": r, "format": name, "input": str(path)} for r in READERS]
            results = [_run(["--read", json.dumps(spec)]) for spec in specs]
            out[name] = {spec["reader"]: r for spec, r in zip(specs, results) if r}
            path.unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="40k and 160k lines per format")
    parser.add_argument("--sizes", type=int, nargs=2, metavar="N", help="two line counts")
    parser.add_argument("--formats", nargs="+", choices=list(BENCHES), default=JSON_FORMATS)
    parser.add_argument(
        "--compare",
        type=int,
        metavar="LINES",
        help="instead: parse-only speed and memory of json.loads, orjson, msgspec, polars and "
        "pyarrow (those installed) on files of LINES lines",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)  # one conversion, in a subprocess
    parser.add_argument("--read", help=argparse.SUPPRESS)  # one reader, in a subprocess
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    if args.read:
        print(json.dumps(read_child(json.loads(args.read))))
        return 0
    if args.compare:
        formats = [f for f in args.formats if f in KEYS]
        print(json.dumps(compare_readers(args.compare, formats), indent=1))
        return 0
    sizes = tuple(args.sizes) if args.sizes else None
    print(json.dumps(figures(args.quick, args.formats, sizes), indent=1))  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    sys.exit(main())
