#!/usr/bin/python3
"""notmuch side of scripts/bench-archive: the same measurements as
imap-proxy's archive_bench example, on the same maildir.

usage: notmuch_bench.py WORK plain|encrypted RUNS QUERIES
Prints one JSON document (rates, query latencies, index bytes).
"""
import json
import os
import shutil
import subprocess
import sys
import time

import notmuch2


def percentile(sorted_values, p):
    if not sorted_values:
        return 0.0
    i = round((len(sorted_values) - 1) * p)
    return sorted_values[min(i, len(sorted_values) - 1)]


def dir_size(path):
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    return total


def main():
    work, which, runs, queries = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    work = os.path.abspath(work)
    mail_root = os.path.join(work, which)
    messages = len(os.listdir(os.path.join(mail_root, "cur")))
    env = dict(os.environ)
    gnupg = os.path.join(work, "gnupg")
    env["GNUPGHOME"] = gnupg
    rates = []
    latencies = {}
    db_path = ""
    for r in range(runs):
        db_path = os.path.join(work, f"notmuch-{which}-{r}")
        shutil.rmtree(db_path, ignore_errors=True)
        os.makedirs(db_path)
        config = os.path.join(db_path, "config")
        with open(config, "w") as f:
            f.write(f"[database]\npath={db_path}\nmail_root={mail_root}\n")
            f.write("[user]\nname=Alice\nprimary_email=alice@example.org\n")
            f.write("[new]\ntags=inbox;\n")
            f.write(f"[index]\ndecrypt={'true' if which == 'encrypted' else 'false'}\n")
        env["NOTMUCH_CONFIG"] = config
        started = time.monotonic()
        subprocess.run(["notmuch", "new", "--quiet"], env=env, check=True)
        rates.append(messages / (time.monotonic() - started))
        if r + 1 == runs:
            os.environ["NOTMUCH_CONFIG"] = config
            db = notmuch2.Database(path=db_path, config=config)
            with open(queries) as q:
                for line in q:
                    kind, _, query = line.rstrip("\n").partition("\t")
                    if not query:
                        continue
                    for _ in range(20):
                        t = time.monotonic()
                        # Like `gateway search`: the best 50, with subject and sender.
                        n = 0
                        for m in db.messages(query, sort=notmuch2.Database.SORT.NEWEST_FIRST):
                            for name in ("subject", "from"):
                                try:
                                    m.header(name)
                                except LookupError:
                                    pass
                            n += 1
                            if n == 50:
                                break
                        latencies.setdefault(kind, []).append((time.monotonic() - t) * 1000)
            db.close()
        else:
            pass
    size = dir_size(db_path)
    for r in range(runs - 1):
        shutil.rmtree(os.path.join(work, f"notmuch-{which}-{r}"), ignore_errors=True)
    summary = {}
    for kind, samples in latencies.items():
        samples.sort()
        summary[kind] = {
            "p50_ms": percentile(samples, 0.5),
            "p99_ms": percentile(samples, 0.99),
            "samples": len(samples),
        }
    print(json.dumps({"tool": "notmuch", "set": which, "messages": messages, "rates": rates,
                      "queries": summary, "bytes": size}))


if __name__ == "__main__":
    main()
