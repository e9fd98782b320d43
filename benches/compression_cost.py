#!/usr/bin/env python3
"""What asking for identity costs versus decoding gzip for scrubbing: the
compression ratio of an API-like JSON body and zlib inflate speed.
Run: python3 benches/compression_cost.py"""
import gzip, json, random, time, zlib
random.seed(1)
words = "repository owner login node_id html_url description fork created_at updated_at pushed_at stargazers_count language default_branch".split()
items = []
for i in range(300):
    items.append({w: (f"https://api.example.com/repos/org{i%7}/{w}-{random.randint(0,99999)}" if "url" in w else random.choice([True, False, i, f"{w}-{random.randint(0,999)}"])) for w in words})
body = json.dumps(items, indent=2).encode()
gz = gzip.compress(body, 6)
t = time.perf_counter(); n = 0
while time.perf_counter() - t < 1.0:
    zlib.decompress(gz, 31); n += 1
dt = (time.perf_counter() - t) / n
print(f"body {len(body)} B, gzip -6 {len(gz)} B, ratio {len(body)/len(gz):.1f}x, inflate {len(body)/dt/1e6:.0f} MB/s of output on one core")
