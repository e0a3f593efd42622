#!/usr/bin/python3
"""report.py - the comparison table of one compare.sh run, and the scaling chart.

    report.py --dir OUT [--svg PATH]

Reads OUT/sgmq.json (sgmq-bench --json), OUT/peers.jsonl, OUT/ceilings.jsonl
and OUT/machine.txt; prints Markdown: the machine, the ceilings, every shape
with sgmq / peer ratios, the targets of issue 8 and, when sgmq.json holds
the scaling shapes, their tables; writes the scaling chart as SVG (OUT/
scaling.svg, or --svg). Medians over the runs everywhere.
"""
import argparse
import json
import math
import os
import statistics
import sys


def load_jsonl(path):
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    rows.append(json.loads(line))
    return rows


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, unit=""):
    if v is None:
        return "-"
    if unit == "ms":
        return f"{v:.3f}"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.2f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "-"
    if a / b < 0.01:
        return "<0.01"
    return f"{a / b:.2f}"


class Sgmq:
    def __init__(self, path):
        self.doc = {"results": [], "machine": {}}
        if os.path.exists(path):
            with open(path) as f:
                self.doc = json.load(f)

    def get(self, shape, size, case, metric):
        for r in self.doc["results"]:
            if (r["shape"] == shape and r["size"] == size and r["case"] == case
                    and r["metric"] == metric):
                return r["median"]
        return None

    def rows(self, shape):
        return [r for r in self.doc["results"] if r["shape"] == shape]


class Peers:
    def __init__(self, rows):
        self.rows = rows

    def get(self, peer, mode, shape, size, case, key="rate"):
        return med([r.get(key) for r in self.rows
                    if r.get("peer") == peer and r.get("mode") == mode
                    and r.get("shape") == shape and r.get("size") == size
                    and r.get("case") == case])


def ceiling(rows, shape, case=None, size=None, key="rate"):
    return med([r.get(key) for r in rows if r.get("shape") == shape
                and (case is None or r.get("case") == case)
                and (size is None or r.get("size") == size)])


def cpu_budget(sg, peers, size, p):
    """What each message costs the whole machine (servers, clients, kernel),
    and the rate that cost allows on all its CPUs: a bound no overlap of
    work with waiting can pass."""
    ncpu = sg.doc["machine"].get("nproc")
    # (name, shape, sgmq case, metric, Redis case, the target's Redis case, factor)
    rows = (("publish->confirm, 1 pub x window 1000", "throughput", "1 pub x window 1000",
             "confirmed", "1 conn x window 1000", "1 conn x window 1000", 2),
            ("publish->confirm, 8 pubs x window 100", "throughput", "8 pubs x window 100",
             "confirmed", "8 conn x window 100", "redis-benchmark 50 clients -P 16", 1),
            ("fan-out 1 -> 10, per delivery acked", "fanout", "1 pub -> 10 members",
             "acked", "1 pub -> 10 groups", "1 pub -> 10 groups", 2))
    if not ncpu or sg.get("throughput", size, rows[0][2], "machine_cpu") is None:
        return
    p(f"## CPU of the whole machine per message ({size} B, {ncpu} CPUs)\n")
    p("| shape | sgmq cores busy | sgmq us/msg | rate its CPUs allow at that cost | "
      "Redis cores busy | Redis us/msg | target rate | sgmq us/msg the target needs |")
    p("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, shape, case, metric, rcase, tcase, factor in rows:
        rate = sg.get(shape, size, case, metric)
        busy = sg.get(shape, size, case, "machine_cpu")
        rrate = peers.get("redis", "always", shape, size, rcase)
        rbusy = peers.get("redis", "always", shape, size, rcase, key="machine_cpu")
        trate = peers.get("redis", "always", shape, size, tcase)
        us = busy / rate * 1e6 if rate and busy else None
        rus = rbusy / rrate * 1e6 if rrate and rbusy else None
        need = factor * trate if trate else None
        p(f"| {name} | {fmt(busy)} | {fmt(us)} | {fmt(ncpu / us * 1e6 if us else None)} | "
          f"{fmt(rbusy)} | {fmt(rus)} | {fmt(need)} | {fmt(ncpu / need * 1e6 if need else None)} |")
    p("")


def svg_chart(sg, path):
    """Two panels: connected members and stored messages (log x)."""
    panels = []
    mem = {}
    for r in sg.rows("scale-members"):
        n = int(r["case"].split()[0])
        mem.setdefault(n, {})[r["metric"]] = r["median"]
    sto = {}
    for r in sg.rows("scale-store"):
        n = int(r["case"].split()[0])
        sto.setdefault(n, {})[r["metric"]] = r["median"]
    if mem:
        panels.append(("Connected members (min(N,10) acking)", mem,
                       [("confirmed", "publish -> confirm msg/s (1 pub x 1000)", "#1f77b4", "left"),
                        ("p99 at 2000/s", "p99 ms at 2,000/s", "#d62728", "right"),
                        ("p50 at 2000/s", "p50 ms at 2,000/s", "#ff7f0e", "right")]))
    if sto:
        panels.append(("Stored messages", sto,
                       [("confirmed (1 KiB)", "publish -> confirm msg/s (1 pub x 1000)", "#1f77b4", "left"),
                        ("p99 at 2000/s", "p99 ms at 2,000/s", "#d62728", "right"),
                        ("p50 at 2000/s", "p50 ms at 2,000/s", "#ff7f0e", "right"),
                        ("start", "broker start-up ms", "#2ca02c", "right")]))
    if not panels:
        return False
    W, H, pad = 460, 300, 60
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W * len(panels)}" height="{H + 80}" '
           f'font-family="sans-serif" font-size="11">',
           f'<rect width="100%" height="100%" fill="white"/>']
    for p, (title, data, series) in enumerate(panels):
        x0 = p * W
        xs = sorted(data)
        lx = [math.log10(x) for x in xs]
        lo, hi = min(lx), max(lx)
        if hi == lo:
            hi = lo + 1
        def X(x):
            return x0 + pad + (math.log10(x) - lo) / (hi - lo) * (W - 2 * pad)
        out.append(f'<text x="{x0 + W / 2}" y="18" text-anchor="middle" font-size="13" '
                   f'font-weight="bold">{title}</text>')
        out.append(f'<line x1="{x0 + pad}" y1="{H - 30}" x2="{x0 + W - pad}" y2="{H - 30}" stroke="black"/>')
        out.append(f'<line x1="{x0 + pad}" y1="40" x2="{x0 + pad}" y2="{H - 30}" stroke="black"/>')
        out.append(f'<line x1="{x0 + W - pad}" y1="40" x2="{x0 + W - pad}" y2="{H - 30}" stroke="black"/>')
        for x in xs:
            out.append(f'<text x="{X(x):.1f}" y="{H - 16}" text-anchor="middle">{x:,}</text>')
        left = [data[x].get(s[0]) for s in series if s[3] == "left" for x in xs]
        right = [data[x].get(s[0]) for s in series if s[3] == "right" for x in xs]
        lmax = max([v for v in left if v] or [1]) * 1.15
        rmax = max([v for v in right if v] or [1]) * 1.15
        for k in range(5):
            frac = k / 4
            y = H - 30 - frac * (H - 70)
            out.append(f'<text x="{x0 + pad - 4}" y="{y + 4:.1f}" text-anchor="end" fill="#1f77b4">'
                       f'{lmax * frac:,.0f}</text>')
            out.append(f'<text x="{x0 + W - pad + 4}" y="{y + 4:.1f}" fill="#d62728">'
                       f'{rmax * frac:.1f}</text>')
            out.append(f'<line x1="{x0 + pad}" y1="{y:.1f}" x2="{x0 + W - pad}" y2="{y:.1f}" '
                       f'stroke="#ddd"/>')
        for i, (metric, label, colour, axis) in enumerate(series):
            top = lmax if axis == "left" else rmax
            pts = [(X(x), H - 30 - (data[x][metric] / top) * (H - 70))
                   for x in xs if data[x].get(metric) is not None]
            if pts:
                out.append('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>'
                           % (colour, " ".join(f"{a:.1f},{b:.1f}" for a, b in pts)))
                for a, b in pts:
                    out.append(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3" fill="{colour}"/>')
            out.append(f'<text x="{x0 + pad}" y="{H + 5 + 14 * i}" fill="{colour}">'
                       f'{label} ({axis} axis)</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--svg")
    args = ap.parse_args()
    d = args.dir
    sg = Sgmq(os.path.join(d, "sgmq.json"))
    peers = Peers(load_jsonl(os.path.join(d, "peers.jsonl")))
    ceil = load_jsonl(os.path.join(d, "ceilings.jsonl"))
    p = print
    p("# sgmq compared, one run\n")
    if os.path.exists(os.path.join(d, "machine.txt")):
        p("```")
        p(open(os.path.join(d, "machine.txt")).read().rstrip())
        p("```\n")
    runs = sg.doc.get("runs", "?")
    p(f"Medians of {runs} runs. sgmq always runs CURVE (encrypted, authenticated), "
      "bodies encrypted at rest, every confirm after the fsync; Redis and NATS run "
      "on plain TCP without TLS.\n")

    # Ceilings
    p("## Ceilings of this machine\n")
    p("| ceiling | median |")
    p("|---|---:|")
    for case in ("overwrite", "append"):
        p(f"| synced 4 KiB writes/s ({case}, pwrite+fdatasync) | {fmt(ceiling(ceil, 'disk', case))} |")
        p(f"| synced 4 KiB write p50 / p99 ms ({case}) | {fmt(ceiling(ceil, 'disk', case, key='p50_ms'), 'ms')}"
          f" / {fmt(ceiling(ceil, 'disk', case, key='p99_ms'), 'ms')} |")
    p(f"| synced 4 KiB write p50 / p99 ms, open loop at 2,000/s (overwrite) | "
      f"{fmt(ceiling(ceil, 'disk-lat', '2000/s offered', key='p50_ms'), 'ms')}"
      f" / {fmt(ceiling(ceil, 'disk-lat', '2000/s offered', key='p99_ms'), 'ms')} |")
    p(f"| LMDB synced commits/s, 1 put (1 KiB) per txn | {fmt(ceiling(ceil, 'lmdb', '1 puts/txn', key='commits'))} |")
    p(f"| LMDB synced commit p50 / p99 ms, 1 put per txn | {fmt(ceiling(ceil, 'lmdb', '1 puts/txn', key='p50_ms'), 'ms')}"
      f" / {fmt(ceiling(ceil, 'lmdb', '1 puts/txn', key='p99_ms'), 'ms')} |")
    p(f"| LMDB synced commits/s, 1000 puts per txn | {fmt(ceiling(ceil, 'lmdb', '1000 puts/txn', key='commits'))}"
      f" ({fmt(ceiling(ceil, 'lmdb', '1000 puts/txn', key='puts'))} puts/s) |")
    sizes = sorted({r["size"] for r in sg.doc["results"] if r["shape"] in ("throughput", "latency")}
                   | {r.get("size") for r in ceil if r.get("shape") == "curve"}, reverse=True)
    for size in sizes:
        p(f"| raw CZMQ DEALER->ROUTER CURVE round trips/s, {size} B, 1000 in flight | "
          f"{fmt(ceiling(ceil, 'curve', size=size))} |")
    p("")

    # Shapes
    for size in sizes:
        p(f"## {size} B bodies\n")
        p("| shape | sgmq | Redis `always` | sgmq/Redis | NATS default (no fsync) | sgmq/NATS | "
          "NATS sync (chattr +S) | sgmq/NATS sync |")
        p("|---|---:|---:|---:|---:|---:|---:|---:|")
        for case, rcase in (("1 pub x window 1000", "1 conn x window 1000"),
                            ("8 pubs x window 100", "8 conn x window 100")):
            s = sg.get("throughput", size, case, "confirmed")
            r = peers.get("redis", "always", "throughput", size, rcase)
            nd = peers.get("nats", "default", "throughput", size, rcase)
            ns = peers.get("nats", "sync", "throughput", size, rcase)
            p(f"| publish->confirm msg/s, {case} | {fmt(s)} | {fmt(r)} | {ratio(s, r)} | {fmt(nd)} | "
              f"{ratio(s, nd)} | {fmt(ns)} | {ratio(s, ns)} |")
        s = sg.get("throughput", size, "8 pubs x window 100", "confirmed")
        r = peers.get("redis", "always", "throughput", size, "redis-benchmark 50 clients -P 16")
        p(f"| ... sgmq 8x100 vs redis-benchmark 50 clients x 16 pipelined | {fmt(s)} | {fmt(r)} | "
          f"{ratio(s, r)} | | | | |")
        for rate in (2000, 10000):
            case = f"{rate}/s offered"
            for metric in ("p50", "p99", "p99.9"):
                s = sg.get("latency", size, case, metric)
                r = peers.get("redis", "always", "latency", size, case, metric)
                nd = peers.get("nats", "default", "latency", size, case, metric)
                ns = peers.get("nats", "sync", "latency", size, case, metric)
                p(f"| latency {metric} ms at {rate:,}/s (lower is better) | {fmt(s, 'ms')} | {fmt(r, 'ms')} | "
                  f"{ratio(s, r)} | {fmt(nd, 'ms')} | {ratio(s, nd)} | {fmt(ns, 'ms')} | {ratio(s, ns)} |")
        s = sg.get("fanout", size, "1 pub -> 10 members", "acked")
        r = peers.get("redis", "always", "fanout", size, "1 pub -> 10 groups")
        p(f"| fan-out 1 -> 10, deliveries acked/s | {fmt(s)} | {fmt(r)} | {ratio(s, r)} | n/a | | n/a | |")
        sr = [x for x in sg.rows("replay") if x["size"] == size and x["metric"] == "streamed"]
        s = sr[0]["median"] if sr else None
        rr = [x for x in peers.rows if x.get("peer") == "redis" and x.get("shape") == "replay"
              and x.get("size") == size]
        r = med([x["rate"] for x in rr])
        p(f"| replay msg/s to one auditor (sgmq: chain verified; Redis: XRANGE, nothing verified) | "
          f"{fmt(s)} | {fmt(r)} | {ratio(s, r)} | n/a | | n/a | |")
        curve = ceiling(ceil, "curve", size=size)
        s = sg.get("throughput", size, "1 pub x window 1000", "confirmed")
        p(f"| sgmq 1x1000 / raw CURVE round trips ({fmt(curve)}/s) | {ratio(s, curve)} | | | | | | |")
        p("")

    rss = [x for x in sg.rows("rss")]
    if rss:
        size = rss[0]["size"]
        case = rss[0]["case"]
        p(f"## Broker memory ({size} B, {case})\n")
        p("| figure | median | min | max |")
        p("|---|---:|---:|---:|")
        for x in rss:
            p(f"| {x['metric']} ({x['unit']}) | {fmt(x['median'])} | {fmt(x['min'])} | {fmt(x['max'])} |")
        rp = peers.get("redis", "always", "rss", 0, "server peak")
        p(f"\nPeer servers' peak RSS over their whole runs (other workloads, for scale only): "
          f"Redis {fmt(rp)} MiB (it keeps every stream entry in memory), "
          f"NATS default {fmt(peers.get('nats', 'default', 'rss', 0, 'server peak'))} MiB.\n")

    # Targets (1 KiB)
    size = 1024
    p("## Targets (issue 8, 1 KiB)\n")
    p("| target | measured | needed | met? |")
    p("|---|---:|---:|---|")

    def target(name, value, need, higher=True, unit=""):
        if value is None or need is None:
            p(f"| {name} | - | - | not measured |")
            return
        ok = value >= need if higher else value <= need
        by = value / need if need else 0
        p(f"| {name} | {fmt(value, unit)} | {'>=' if higher else '<='} {fmt(need, unit)} | "
          f"{'yes' if ok else 'NO'} ({by:.2f}x of the bound) |")

    s1 = sg.get("throughput", size, "1 pub x window 1000", "confirmed")
    r1 = peers.get("redis", "always", "throughput", size, "1 conn x window 1000")
    target("1 pub x 1000: >= 2x Redis always, 1 conn x 1000", s1, 2 * r1 if r1 else None)
    curve = ceiling(ceil, "curve", size=size)
    target("1 pub x 1000: >= 0.6x raw CURVE round trips", s1, 0.6 * curve if curve else None)
    s8 = sg.get("throughput", size, "8 pubs x window 100", "confirmed")
    rb = peers.get("redis", "always", "throughput", size, "redis-benchmark 50 clients -P 16")
    target("8 pubs x 100: >= 1x Redis always, redis-benchmark 50 clients", s8, rb)
    lp = sg.get("latency", size, "2000/s offered", "p99")
    dp = ceiling(ceil, "disk", "overwrite", key="p99_ms")
    target("p99 at 2,000/s <= 3x p99 of one synced 4 KiB write (overwrite, back to back)", lp,
           3 * dp if dp else None, higher=False, unit="ms")
    # The same write at the latency shape's own rate and schedule: back to
    # back, the disk and CPUs never idle and a slow stretch holds few writes.
    do = ceiling(ceil, "disk-lat", "2000/s offered", key="p99_ms")
    target("p99 at 2,000/s <= 3x p99 of one synced 4 KiB write (overwrite, open loop at 2,000/s)",
           lp, 3 * do if do else None, higher=False, unit="ms")
    lc = ceiling(ceil, "lmdb", "1 puts/txn", key="p99_ms")
    if lc is not None and dp:
        p(f"| (for scale: p99 of a bare LMDB commit of one put, same run) | {fmt(lc, 'ms')} | "
          f"{'above' if lc > 3 * dp else 'within'} the bound | |")
    fo = sg.get("fanout", size, "1 pub -> 10 members", "acked")
    rf = peers.get("redis", "always", "fanout", size, "1 pub -> 10 groups")
    target("fan-out 1 -> 10 acked/s >= 2x Redis always consumer groups", fo, 2 * rf if rf else None)
    rp = [x for x in sg.rows("replay") if x["size"] == size and x["metric"] == "streamed"]
    target("replay >= 150,000 msg/s to one auditor", rp[0]["median"] if rp else None, 150000)
    delta = [x for x in sg.rows("rss") if x["metric"] == "rss_delta"]
    target("stalled member: RSS within 64 MiB of unstalled", delta[0]["median"] if delta else None,
           64, higher=False)
    p("")
    cpu_budget(sg, peers, size, p)

    # Scaling
    for shape, title in (("scale-members", "Scaling: connected members (1 KiB publishes)"),
                         ("scale-store", "Scaling: stored messages")):
        rows = sg.rows(shape)
        if not rows:
            continue
        p(f"## {title}\n")
        cases = []
        metrics = []
        for x in rows:
            if x["case"] not in cases:
                cases.append(x["case"])
            if x["metric"] not in metrics:
                metrics.append(x["metric"])
        units = {x["metric"]: x["unit"] for x in rows}
        p("| " + " | ".join(["case"] + [f"{m} ({units[m]})" for m in metrics]) + " |")
        p("|---" + "|---:" * len(metrics) + "|")
        for c in cases:
            cells = []
            for m in metrics:
                v = [x["median"] for x in rows if x["case"] == c and x["metric"] == m]
                cells.append(fmt(v[0], units[m]) if v else "-")
            p(f"| {c} | " + " | ".join(cells) + " |")
        p("")
    svg = args.svg or os.path.join(d, "scaling.svg")
    if svg_chart(sg, svg):
        p(f"Chart: {svg}\n")


if __name__ == "__main__":
    sys.exit(main())
