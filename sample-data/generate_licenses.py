#!/usr/bin/env python3
"""Write licenses.csv: 10,000 fake licenses across several products, the same every run.

Names and emails are obviously fake (example.test is reserved for testing). Keys use
keyward's format: 27 Crockford base32 characters plus a Luhn mod 32 check character.

Usage: python3 sample-data/generate_licenses.py [COUNT] > sample-data/licenses.csv
"""

import csv
import random
import sys

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
COLUMNS = [
    "key", "product", "model", "seats", "expires_at", "duration_days",
    "maintenance_expires_at", "features", "customer_name", "customer_email",
    "customer_company", "order_ref", "notes",
]
PRODUCTS = {
    "photo-pro": ["raw", "export", "batch", "cloud"],
    "audio-studio": ["multitrack", "vst", "mastering"],
    "cad-lite": ["2d", "3d", "dwg"],
    "backup-agent": ["scheduler", "encryption"],
    "notes-plus": ["sync", "ocr"],
}
FIRST = ["Test", "Sample", "Demo", "Fake", "Example", "Dummy"]
LAST = ["Customer", "Buyer", "User", "Person", "Account"]
COMPANIES = ["Example Labs", "Test Widgets Ltd", "Sample Systems", "Demo Works", ""]


def check_digit(digits):
    """Luhn mod 32 over base32 digit values, as keyward computes it."""
    factor, total = 2, 0
    for digit in reversed(digits):
        addend = factor * digit
        total += addend // 32 + addend % 32
        factor = 1 if factor == 2 else 2
    return (32 - total % 32) % 32


def make_key(rng):
    digits = [rng.randrange(32) for _ in range(27)]
    digits.append(check_digit(digits))
    text = "".join(ALPHABET[d] for d in digits)
    return "-".join(text[i:i + 4] for i in range(0, 28, 4))


def make_row(rng, number):
    product = rng.choice(sorted(PRODUCTS))
    model = rng.choices(["permanent", "subscription", "trial"], weights=[5, 4, 1])[0]
    seats = rng.choice([1, 1, 1, 2, 3, 5, 10, 25])
    expires, duration = "", ""
    if model == "subscription":
        expires = f"{rng.choice([2027, 2028])}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
    elif model == "trial":
        duration = str(rng.choice([14, 30]))
        seats = 1
    maintenance = "" if model == "trial" else f"2027-{rng.randrange(1, 13):02d}-01"
    features = rng.sample(PRODUCTS[product], rng.randrange(1, len(PRODUCTS[product]) + 1))
    name = f"{rng.choice(FIRST)} {rng.choice(LAST)} {number:05d}"
    return [
        make_key(rng), product, model, str(seats), expires, duration, maintenance,
        ";".join(sorted(features)), name, f"customer{number:05d}@example.test",
        rng.choice(COMPANIES), f"ORDER-{number:06d}", "generated sample data",
    ]


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    rng = random.Random(20261204)
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(COLUMNS)
    for number in range(1, count + 1):
        writer.writerow(make_row(rng, number))


if __name__ == "__main__":
    main()
