#!/usr/bin/env python3
"""Registration flood against a running convene (issue 13): N registrations,
C at a time, while another user reads GET /v1/teams in a loop. Reports the
server's RSS (peak, at the end, and after --settle seconds), the other user's
latency, and the status codes the flood got.

    convene up --register-max-per-ip 100000 &      # lift the per-IP limit to
    python3 benches/register-flood.py --pid $!     # measure the hashing bound

Only talks to the given URL (default http://127.0.0.1:8080); every request
has a timeout and the run stops by itself.
"""

import argparse
import collections
import concurrent.futures
import http.client
import json
import statistics
import threading
import time
import urllib.parse
import uuid


def request(base, method, path, body=None, token=None, timeout=60.0):
    u = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=timeout)
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, data
    except (OSError, http.client.HTTPException) as e:
        return f"error:{type(e).__name__}", b""
    finally:
        conn.close()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def percentile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--pid", type=int, required=True, help="the convene process, for its RSS")
    ap.add_argument("--total", type=int, default=256)
    ap.add_argument("--concurrency", type=int, default=128)
    ap.add_argument("--settle", type=float, default=15.0, help="seconds to wait before the last RSS")
    ap.add_argument("--label", default="")
    args = ap.parse_args()
    if urllib.parse.urlsplit(args.url).hostname not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("only loopback targets")

    run = uuid.uuid4().hex[:8]
    password = "correct horse battery"
    reader = f"reader{run}"
    # The reader's account, made before the flood (retried if the server is busy).
    for _ in range(50):
        st, _ = request(args.url, "POST", "/v1/auth/register",
                        {"username": reader, "email": f"{reader}@example.org", "password": password})
        if st == 201:
            break
        time.sleep(0.2)
    token = None
    for _ in range(50):
        st, data = request(args.url, "POST", "/v1/auth/login", {"login": reader, "password": password})
        if st == 200:
            token = json.loads(data)["access_token"]
            break
        time.sleep(0.2)
    if not token:
        raise SystemExit("could not log the reader in")

    rss_before = rss_kib(args.pid)
    done = threading.Event()
    peak = [rss_before]
    latencies, reader_status = [], collections.Counter()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_kib(args.pid))
            time.sleep(0.05)

    def read_loop():
        while not done.is_set():
            t = time.monotonic()
            st, _ = request(args.url, "GET", "/v1/teams", token=token, timeout=30.0)
            latencies.append(time.monotonic() - t)
            reader_status[st] += 1
            time.sleep(0.02)

    def register(i):
        name = f"f{run}x{i}"
        st, _ = request(args.url, "POST", "/v1/auth/register",
                        {"username": name, "email": f"{name}@example.org", "password": password})
        return st

    threads = [threading.Thread(target=sample), threading.Thread(target=read_loop)]
    for t in threads:
        t.start()
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
        statuses = collections.Counter(pool.map(register, range(args.total)))
    flood_s = time.monotonic() - started
    done.set()
    for t in threads:
        t.join()
    rss_end = rss_kib(args.pid)
    time.sleep(args.settle)
    rss_settled = rss_kib(args.pid)

    ms = [x * 1000 for x in latencies]
    print(json.dumps({
        "label": args.label,
        "flood": {"total": args.total, "concurrency": args.concurrency, "seconds": round(flood_s, 2),
                  "statuses": {str(k): v for k, v in sorted(statuses.items(), key=str)}},
        "rss_mib": {"before": round(rss_before / 1024, 1), "peak": round(peak[0] / 1024, 1),
                    "end": round(rss_end / 1024, 1),
                    f"after_{args.settle:g}s": round(rss_settled / 1024, 1)},
        "other_user_get_teams_ms": {
            "count": len(ms), "statuses": {str(k): v for k, v in reader_status.items()},
            "median": round(statistics.median(ms), 1) if ms else None,
            "p95": round(percentile(ms, 0.95), 1) if ms else None,
            "max": round(max(ms), 1) if ms else None,
        },
    }))


if __name__ == "__main__":
    main()
