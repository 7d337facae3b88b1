#!/usr/bin/python3
"""Runs W1, W2 (../shared/anchors.md) and an LSTM training step (LSTM(28, 128) + Linear, Adam,
batch 128: the fashion_mnist_lstm example's model) in xgrad and in PyTorch, alternating fresh processes
(xgrad, PyTorch default, PyTorch kept heap, xgrad, ...) in one run, and prints the median of
each figure and xgrad's ratio to the faster of the two PyTorch configurations.

PyTorch at its best: channels_last, its thread count set before import, and once more with
glibc told to keep freed memory (GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:
glibc.malloc.trim_threshold=2147483647, set before the process starts, as
../shared/anchors/torch_bench.py --keep-heap does). libxgrad gives itself that setting
(src/memory.cpp); without it PyTorch pays page faults on its fresh multi-MB buffers, which
is not how its performance guides tell a user to run it.

The header names the machine: CPU model and ISA flags (lscpu), and sgemm GFLOP/s at the
thread count (`bench gemm`), measured at the start of the run.

Needs Debian's python3-torch and python3-numpy, under /usr/bin/python3, and a built
build/tools/bench (tools/test or tools/run builds it).

  tools/compare_torch.py --threads 2 --rounds 3 --batches 200
  tools/compare_torch.py --threads 1 --only w1
  tools/compare_torch.py --bf16 --only convB      (bf16 mixed precision on both sides)
"""
import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "build", "tools", "bench")
DATA = "/usr/share/datasets/fashion-mnist"
CONVS = {  # name: (H, W, C, F, k, stride, pad), batch 64
    "convA": (28, 28, 1, 32, 3, 1, 1), "convB": (14, 14, 32, 64, 3, 1, 1), "convC": (32, 32, 3, 64, 3, 1, 1),
    "convD": (32, 32, 64, 128, 3, 2, 1), "convE": (16, 16, 64, 64, 5, 1, 0),
}


def results(text):
    return [json.loads(line[len("RESULT "):]) for line in text.splitlines() if line.startswith("RESULT ")]


# ---------------------------------------------------------------- PyTorch side (a subprocess)

def torch_worker(kind, threads, batches, only, bf16):
    import contextlib

    import numpy as np
    import torch
    import torch.nn as nn

    # bf16: PyTorch's mixed precision, autocast around the forward pass (as its guides say)
    def mixed():
        return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cl = torch.channels_last

    def images(name):
        with gzip.open(os.path.join(DATA, name), "rb") as f:
            raw = np.frombuffer(f.read(), np.uint8, offset=16)
        return torch.from_numpy(raw.reshape(-1, 1, 28, 28).astype(np.float32) / 255.0)

    def model():
        return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10)).to(memory_format=cl)

    if kind == "w1":
        x = images("train-images-idx3-ubyte.gz")
        with gzip.open(os.path.join(DATA, "train-labels-idx1-ubyte.gz"), "rb") as f:
            y = torch.from_numpy(np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int64))
        m = model()
        opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
        loss_fn = nn.CrossEntropyLoss()
        order = torch.randperm(len(x))
        per_epoch = (len(x) + 63) // 64
        n = min(batches, per_epoch) if batches else per_epoch
        t0 = time.perf_counter()
        for i in range(n):
            idx = order[i * 64:(i + 1) * 64]
            xb = x[idx].contiguous(memory_format=cl)
            with mixed():
                loss = loss_fn(m(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        s = time.perf_counter() - t0
        print("RESULT " + json.dumps({"bench": "w1", "s_per_epoch": s / n * per_epoch, "images_per_s": n * 64 / s}))
    elif kind == "infer":
        x = images("t10k-images-idx3-ubyte.gz")
        m = model().eval()
        times = []
        with torch.no_grad(), mixed():
            for rep in range(4):
                t0 = time.perf_counter()
                for i in range(0, len(x), 256):
                    m(x[i:i + 256].contiguous(memory_format=cl))
                if rep:
                    times.append(time.perf_counter() - t0)
        print("RESULT " + json.dumps({"bench": "infer", "images_per_s": len(x) / statistics.median(times)}))
    elif kind == "lstm":  # bench lstm's model and steps
        class Reader(nn.Module):
            def __init__(self):
                super().__init__()
                self.lstm, self.head = nn.LSTM(28, 128, batch_first=True), nn.Linear(128, 10)

            def forward(self, rows):
                return self.head(self.lstm(rows)[1][0][0])

        m = Reader()
        opt = torch.optim.Adam(m.parameters(), lr=1e-3)
        x, y = torch.rand(128, 28, 28), torch.arange(128) % 10

        def step():
            with mixed():
                loss = nn.functional.cross_entropy(m(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()

        for _ in range(5):
            step()
        t0 = time.perf_counter()
        for _ in range(100):
            step()
        print("RESULT " + json.dumps({"bench": "lstm", "s_per_100": time.perf_counter() - t0}))
    elif kind == "ops":
        h, w, c, f, k, s, p = CONVS[only]
        x = torch.randn(64, c, h, w).contiguous(memory_format=cl).requires_grad_()
        conv = nn.Conv2d(c, f, k, stride=s, padding=p).to(memory_format=cl)

        def median_ms(fn, reps=15):
            fn()
            out = []
            for _ in range(reps):
                t0 = time.perf_counter()
                fn()
                out.append((time.perf_counter() - t0) * 1000)
            return statistics.median(out)

        def fwd():
            with torch.no_grad(), mixed():
                conv(x)

        def both():
            with mixed():
                out = conv(x).float().sum()
            out.backward()

        print("RESULT " + json.dumps({"bench": "ops", "op": only, "fwd_ms": median_ms(fwd),
                                      "fwdbwd_ms": median_ms(both)}))


# ---------------------------------------------------------------- the comparison

KEEP_HEAP = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=2147483647"


def run_torch(kind, threads, batches, only="", keep_heap=False, bf16=False):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    env.pop("GLIBC_TUNABLES", None)
    if keep_heap:
        env["GLIBC_TUNABLES"] = KEEP_HEAP
    cmd = ["/usr/bin/python3", os.path.abspath(__file__), "--torch-worker", kind, "--threads", str(threads),
           "--batches", str(batches), "--only", only] + (["--bf16"] if bf16 else [])
    return results(subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout)[0]


def run_xgrad(kind, threads, batches, only="", bf16=False):
    cmd = {"w1": [BENCH, "w1", "--batches", str(batches)], "infer": [BENCH, "infer"],
           "ops": [BENCH, "ops", "--only", only], "lstm": [BENCH, "lstm", "--batches", "100"]}[kind] + ["--threads", str(threads)] + (["--bf16"] if bf16 else [])
    found = [r for r in results(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
             if r.get("bench") == kind]  # not the "precision" line of --bf16
    return found[0] if kind != "ops" else next(r for r in found if r.get("variant") == "automatic")


def machine(threads):
    """CPU model, the ISA flags that decide kernels, and sgemm GFLOP/s at this thread count."""
    model, flags = "unknown CPU", []
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Model name":
                model = value.strip()
            if key.strip() == "Flags":
                have = set(value.split())
                flags = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")
                         if f in have]
    except OSError:
        pass
    gemm = results(subprocess.run([BENCH, "gemm", "--threads", str(threads)], check=True, capture_output=True,
                                  text=True).stdout)
    gflops = gemm[0].get("gflops") if gemm else None
    return {"cpu": model, "isa": flags, "sgemm_gflops": gflops, "threads": threads,
            "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", "")}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians are reported")
    ap.add_argument("--batches", type=int, default=200, help="W1 batches timed per run (0: a whole epoch)")
    ap.add_argument("--only", default="", help="w1, infer, lstm, or one of convA..convE (default: all)")
    ap.add_argument("--bf16", action="store_true",
                    help="mixed precision on both sides: xgrad's AutocastGuard (bench --bf16) against "
                         "torch.autocast('cpu', dtype=torch.bfloat16)")
    ap.add_argument("--torch-worker", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torch_worker:
        return torch_worker(args.torch_worker, args.threads, args.batches, args.only, args.bf16)
    if subprocess.run(["/usr/bin/python3", "-c", "import torch, numpy"], capture_output=True).returncode != 0:
        print("compare_torch: PyTorch is not installed (Debian: apt-get install python3-torch python3-numpy); "
              "nothing compared")
        return 2
    if not os.access(BENCH, os.X_OK):
        print("compare_torch: build/tools/bench is missing; run tools/test or tools/run first")
        return 2
    # (kind, op, key, unit, lower is better)
    cases = [("w1", "", "s_per_epoch", "s/epoch", True), ("infer", "", "images_per_s", "img/s", False),
             ("lstm", "", "s_per_100", "s/100 steps", True)]
    for c in CONVS:
        cases += [("ops", c, "fwd_ms", "ms fwd", True), ("ops", c, "fwdbwd_ms", "ms fwd+bwd", True)]
    if args.only:
        cases = [c for c in cases if args.only in (c[0], c[1])]
    m = machine(args.threads)
    print(f"machine: {m['cpu']}; ISA {' '.join(m['isa']) or 'none of avx2/avx512/amx'}; "
          f"sgemm {m['sgemm_gflops']} GFLOP/s at {args.threads} thread(s)"
          + (f"; OPENBLAS_CORETYPE={m['openblas_coretype']}" if m["openblas_coretype"] else ""))
    print("RESULT " + json.dumps({"machine": m}))
    if args.bf16:
        level = next((r for r in results(subprocess.run([BENCH, "gemm", "--bf16", "--reps", "1"], check=True,
                                                        capture_output=True, text=True).stdout)
                      if r["bench"] == "precision"), {}).get("kernels", "?")
        print(f"bf16 mixed precision on both sides; xgrad's kernels: {level}")
    print(f"threads {args.threads}, {args.rounds} alternating rounds, W1 timed over {args.batches or 'all'} batches")
    print(f"{'figure':<17} {'xgrad':>9} {'torch':>9} {'torch kh':>9} {'ratio':>6}  "
          "(xgrad / faster PyTorch; kh = glibc keeps freed memory; < 1 is xgrad ahead for times, > 1 for img/s)")
    measured = {}  # one set of alternating runs per (kind, op): the forward and fwd+bwd come together
    for kind, only, key, unit, lower in cases:
        if (kind, only) not in measured:
            runs = {"xgrad": [], "torch": [], "torch_keep_heap": []}
            for _ in range(args.rounds):
                runs["xgrad"].append(run_xgrad(kind, args.threads, args.batches, only, args.bf16))
                runs["torch"].append(run_torch(kind, args.threads, args.batches, only, bf16=args.bf16))
                runs["torch_keep_heap"].append(run_torch(kind, args.threads, args.batches, only, keep_heap=True,
                                                         bf16=args.bf16))
            measured[(kind, only)] = runs
        runs = measured[(kind, only)]
        x, t, tk = (statistics.median(r[key] for r in runs[side]) for side in ("xgrad", "torch", "torch_keep_heap"))
        best = min(t, tk) if lower else max(t, tk)
        name = only or kind
        print(f"{name + ' ' + unit:<17} {x:>9.2f} {t:>9.2f} {tk:>9.2f} {x / best:>6.2f}")
        print("RESULT " + json.dumps({"figure": name, "unit": unit, "threads": args.threads, "xgrad": x, "torch": t,
                                      "torch_keep_heap": tk, "best_torch": best, "ratio": x / best,
                                      "rounds": args.rounds, "cpu": m["cpu"], "bf16": args.bf16}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
