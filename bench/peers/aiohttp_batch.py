#!/usr/bin/env python3
"""aiohttp peer for bench/tls_bench.sh: N chat-completion POSTs, at most C in flight, over one
aiohttp.ClientSession (its connector capped at C connections). A C-permit semaphore gates a lazy
producer: request i+C is created only when one of the C in flight has finished. Each reply is
parsed (resp.json()) and its content string kept, as a batch client would.

The request is bench/peers/request.json with "Report id: 000000" replaced by the request's index.
aiohttp speaks HTTP/1.1 only (no HTTP/2): at C in flight it opens up to C connections.

TLS: the server is verified with ssl.create_default_context(), i.e. the system's CAs, or the file
named by the environment variable SSL_CERT_FILE (OpenSSL's default verify paths honour it).

  SSL_CERT_FILE=DIR/ca.pem python3 bench/peers/aiohttp_batch.py \\
      --base-url https://127.0.0.1:PORT/v1 -n 10000 -c 1000

Prints one JSON line: ok, err, errors (by kind), loop_s (first request -> last reply), version.
Exit status 0 when it ran (even with failed requests: see err), 2 on bad usage.
"""

import argparse
import asyncio
import collections
import json
import os
import ssl
import sys
import time

import aiohttp

HERE = os.path.dirname(os.path.abspath(__file__))


def load_template(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def build_body(tmpl, i):
    body = dict(tmpl)
    msgs = []
    for m in tmpl["messages"]:
        m = dict(m)
        if m["role"] == "user":
            m["content"] = m["content"].replace("000000", "%06d" % i)
        msgs.append(m)
    body["messages"] = msgs
    return body


async def run(args):
    tmpl = load_template(args.request)
    if args.model:
        tmpl["model"] = args.model
    url = args.base_url.rstrip("/") + "/chat/completions"
    headers = {"Authorization": "Bearer " + args.api_key}
    results = [None] * args.n
    errors = collections.Counter()
    sem = asyncio.Semaphore(args.c)
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    ssl_ctx = ssl.create_default_context() if url.startswith("https://") else None
    connector = aiohttp.TCPConnector(limit=args.c, limit_per_host=0, ssl=ssl_ctx)

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(i):
            try:
                async with session.post(url, json=build_body(tmpl, i), headers=headers) as resp:
                    if resp.status != 200:
                        await resp.read()
                        errors["http_%d" % resp.status] += 1
                        return
                    data = await resp.json()
                    results[i] = data["choices"][0]["message"]["content"]
            except Exception as e:  # noqa: BLE001 - count every failure kind
                errors[type(e).__name__] += 1
                if args.verbose and sum(errors.values()) <= 3:
                    print("request %d: %r" % (i, e), file=sys.stderr)
            finally:
                sem.release()

        tasks = set()
        t0 = time.perf_counter()
        for i in range(args.n):
            await sem.acquire()
            t = asyncio.ensure_future(one(i))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)
        loop_s = time.perf_counter() - t0

    ok = sum(1 for r in results if r is not None)
    return {
        "peer": "aiohttp",
        "version": aiohttp.__version__,
        "python": sys.version.split()[0],
        "n": args.n,
        "c": args.c,
        "ok": ok,
        "err": args.n - ok,
        "errors": dict(errors),
        "loop_s": round(loop_s, 4),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-url", required=True)
    ap.add_argument("-n", type=int, required=True)
    ap.add_argument("-c", type=int, required=True)
    ap.add_argument("--model", default="", help="model to send (default: request.json's)")
    ap.add_argument("--api-key", default="sk-bench-0000000000000000")
    ap.add_argument("--request", default=os.path.join(HERE, "request.json"))
    ap.add_argument("--timeout", type=float, default=120.0, help="per-request total timeout (s)")
    ap.add_argument("--verbose", action="store_true", help="print the first few errors to stderr")
    args = ap.parse_args()
    if args.n < 1 or args.c < 1:
        ap.error("-n and -c must be positive")
    print(json.dumps(asyncio.run(run(args)), sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
