"""Yelp: catering businesses by exact category token, UTC dates, stars < 3 is a false positive.

Business sample (20 lines): catering are -kG0N8sBhBotMbu0KVSPaw (Restaurants, Pizza),
--9e1ONYQuAa-CB_Rrw7Tw (..., Restaurants, ...), Qx9b3kWNP2qfa2vVMg6bJQ (Nightlife, Bars, ...),
YjUWPpI6HXG530lwP-fb2A (a 2017-era list with Restaurants), and, without reviews, lines 13
(Restaurants), 14 (a list with Bars) and 16 (Wine Bars, Bars): 7. Not catering: Restaurant
Supplies (string and list), Juice Bars & Smoothies (string and list), null categories, no
categories key, Sports Bars, Hair Salons, Food Trucks, Shopping, Barbers, Pubs. Line 10 is
broken JSON.

Review sample (22 lines): 11 catering reviews (lines 1, 2, 4, 6, 7, 9, 12, 15, 16, 21, 22), 5 of
them below 3 stars (2, 4, 12, 15, 22); 6 reviews of other businesses (3, 5, 8, 17, 18, 19);
malformed: 10 (30 February), 11 (broken JSON), 13 (no stars), 14 (stars "abc"); 20 is blank.
"""

from __future__ import annotations

import time

import pytest

from dataset_converters import convert

from .util import SAMPLES, counts, malformed_lines, read_inter, summary

REVIEWS, BUSINESS = SAMPLES / "yelp_review.json", SAMPLES / "yelp_business.json"
CATERING = {
    "-kG0N8sBhBotMbu0KVSPaw",
    "--9e1ONYQuAa-CB_Rrw7Tw",
    "Qx9b3kWNP2qfa2vVMg6bJQ",
    "YjUWPpI6HXG530lwP-fb2A",
}


def run(tmp_path, **options):
    stats = convert("yelp", [REVIEWS], tmp_path, business=BUSINESS, **options)
    columns, rows = read_inter(tmp_path / "yelp" / "yelp.inter")
    assert columns[2] == "rating:float" and columns[-1] == "false_positive:float"
    assert counts(rows) == summary(stats)
    return stats, rows


def test_counts_and_token_matching(tmp_path):
    stats, rows = run(tmp_path)
    assert summary(stats) == (5, 4, 11, 5)
    assert {r[1] for r in rows} == CATERING
    assert (stats["businesses"], stats["catering_businesses"]) == (20, 7)
    assert stats["skipped"] == {"blank": 1, "other_business": 6}
    assert stats["lines"] == 22
    # The business file's broken line, then the review lines, in file order.
    assert stats["malformed"] == 5
    assert stats["malformed_first"][0].startswith(f"{BUSINESS}:10:")
    assert malformed_lines(stats)[1:] == [10, 11, 13, 14]


def test_dates_are_utc(tmp_path, monkeypatch):
    monkeypatch.setenv("TZ", "America/Phoenix")  # a local zone must not leak into the output
    time.tzset()
    try:
        _, rows = run(tmp_path)
    finally:
        monkeypatch.undo()
        time.tzset()
    by_pair = {(r[0], r[1]): r for r in reversed(rows)}  # the first review of a pair
    # date -u -d '2018-07-07 22:09:11' +%s
    assert by_pair["hG7b0MtEbXx5QzbzE6C_VA", "-kG0N8sBhBotMbu0KVSPaw"][2:] == (
        "5.0",
        "1531001351",
        "0.0",
    )
    # 2017-era line: integer stars, date only (midnight UTC: date -u -d 2016-05-28 +%s).
    assert by_pair["-Cr3TlK6PhmBdKeu2Dy8gA", "YjUWPpI6HXG530lwP-fb2A"][2:] == (
        "3",
        "1464393600",
        "0.0",
    )
    assert by_pair["dacAIZ6fTM6mqwW5uxkskg", "Qx9b3kWNP2qfa2vVMg6bJQ"][2:] == (
        "2",
        "1501545600",
        "1.0",
    )


def test_repeated_reviews_kept_unless_dedupe(tmp_path):
    # hG7b0MtEbXx5QzbzE6C_VA reviewed the pizza place in 2018 (5 stars) and in 2019 (4 stars).
    _, rows = run(tmp_path / "all")
    assert [
        r[3] for r in rows if r[:2] == ("hG7b0MtEbXx5QzbzE6C_VA", "-kG0N8sBhBotMbu0KVSPaw")
    ] == ["1531001351", "1576220400"]
    stats, rows = run(tmp_path / "dedupe", dedupe=True)
    assert summary(stats) == (5, 4, 10, 5)
    assert ("hG7b0MtEbXx5QzbzE6C_VA", "-kG0N8sBhBotMbu0KVSPaw", "5.0", "1531001351", "0.0") in rows


def test_categories_option(tmp_path):
    # Bars only: Qx9b3kWNP2qfa2vVMg6bJQ and business lines 14 and 16 (no reviews). The
    # reviews of Qx9b3kWNP2qfa2vVMg6bJQ are lines 4 (1 star), 12 (2) and 21 (3).
    stats, _ = run(tmp_path / "bars", categories=["Bars"])
    assert summary(stats) == (3, 1, 3, 2)
    assert stats["catering_businesses"] == 3
    # An exact token also selects the near miss when asked for: one juice bar review (4 stars).
    stats, rows = run(tmp_path / "juice", categories=["Juice Bars & Smoothies"])
    assert stats["catering_businesses"] == 2
    assert rows == [
        ("n6-Gk65cPZL6Uz8qRm3NYw", "k0hlBqXX-Bt0vf1op7Jr1w", "4.0", "1420329663", "0.0")
    ]


def test_wrong_files_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="not a Yelp review file"):
        convert("yelp", [BUSINESS], tmp_path, business=BUSINESS)
    with pytest.raises(ValueError, match="not a Yelp business file"):
        convert("yelp", [REVIEWS], tmp_path, business=REVIEWS)
    with pytest.raises(ValueError, match="--business"):
        convert("yelp", [REVIEWS], tmp_path)
    with pytest.raises(ValueError, match="not found"):
        convert("yelp", [REVIEWS], tmp_path, business=tmp_path / "missing.json")
    assert not (tmp_path / "yelp").exists()
