#!/usr/bin/python3
"""Ops against PyTorch: random cases, odd geometries included, in float64 (or float32).

For each case this draws the op's inputs and options, runs PyTorch forward and backward
with a random output gradient, runs the same case in xgrad (build/tools/torch_check), and
compares the output and every input's gradient. A case PyTorch refuses must be refused by
xgrad too (a typed xgrad::Error), and the other way round, except where xgrad's headers
document a deliberate difference (this script does not draw those cases).

Needs Debian's python3-torch and python3-numpy under /usr/bin/python3, and a built
build/tools/torch_check (XGRAD_BUILD for another build directory). Exits 1 on a difference.

  tools/check_torch.py                      300 cases per op family, float64, seed 0
  tools/check_torch.py --cases 2000 --seed 3
  tools/check_torch.py --float32            16-32 channels too (the direct kernels), float32
"""

import argparse
import os
import random
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def nhwc(t):
    return t.permute(0, 2, 3, 1).contiguous()


class Cases:
    """Cases in torch_check's format, each with PyTorch's answer or refusal."""

    def __init__(self, dtype):
        self.arrays, self.expect, self.dtype = {}, [], dtype

    def add(self, desc, code, params, inputs, torch_fn, to_xgrad, from_xgrad, target=None):
        """inputs: arrays in xgrad's layout. to_xgrad(torch output) gives xgrad's layout;
        from_xgrad[k](array) gives input k in PyTorch's layout (and back for its gradient)."""
        i = len(self.expect)
        self.arrays[f"p_{i}"] = np.array([code] + list(params), np.float64)
        for name, a in zip("abc", inputs):
            self.arrays[f"{name}_{i}"] = a
        if target is not None:
            self.arrays[f"t_{i}"] = target
        gy = None
        answers = []  # float64, then (float32 runs) PyTorch's float32 numbers: the rounding it makes
        for dtype in [torch.float64] + ([self.dtype] if self.dtype != torch.float64 else []):
            ts = [torch.tensor(conv(a), dtype=dtype).requires_grad_() for a, conv in zip(inputs, from_xgrad)]
            try:
                y = torch_fn(*ts)
            except (RuntimeError, ValueError) as e:
                self.expect.append((desc, None, str(e).splitlines()[0]))
                return
            if gy is None:
                gy = torch.randn(y.shape, dtype=torch.float64)
            y.backward(gy.to(dtype))
            got = {"y": to_xgrad(y).detach().numpy().astype(np.float64)}
            for name, t, conv in zip(("ga", "gb", "gc"), ts, from_xgrad):
                g = t.grad.numpy().astype(np.float64)
                got[name] = np.ascontiguousarray(conv.back(g)) if hasattr(conv, "back") else g
            answers.append(got)
        self.arrays[f"gy_{i}"] = to_xgrad(gy).detach().numpy()
        self.expect.append((desc, answers, None))


    def add_recurrent(self, desc, gru, n, steps, size, hidden, layers, bidirectional):
        """An LSTM or GRU with PyTorch's random parameters, handed to xgrad by name."""
        i = len(self.expect)
        cls = torch.nn.GRU if gru else torch.nn.LSTM
        m = cls(size, hidden, num_layers=layers, bidirectional=bool(bidirectional), batch_first=True).to(self.dtype)
        x = np.random.randn(n, steps, size)
        self.arrays[f"p_{i}"] = np.array([39, gru, size, hidden, layers, bidirectional], np.float64)
        self.arrays[f"a_{i}"] = x
        for name, t in m.named_parameters():
            self.arrays[f"m_{i}/{name}"] = t.detach().numpy().astype(np.float64)
        answers = []
        gy = None
        for dtype in [torch.float64] + ([self.dtype] if self.dtype != torch.float64 else []):
            mm = cls(size, hidden, num_layers=layers, bidirectional=bool(bidirectional), batch_first=True).to(dtype)
            mm.load_state_dict({k: v.to(dtype) for k, v in m.state_dict().items()})
            xt = torch.tensor(x, dtype=dtype).requires_grad_()
            y, _ = mm(xt)
            if gy is None:
                gy = torch.randn(y.shape, dtype=torch.float64)
            y.backward(gy.to(dtype))
            got = {"y": y.detach().numpy().astype(np.float64), "ga": xt.grad.numpy().astype(np.float64)}
            for name, t in mm.named_parameters():
                got[f"gp_{i}/{name}"] = t.grad.numpy().astype(np.float64)
            answers.append(got)
        self.arrays[f"gy_{i}"] = gy.numpy()
        self.expect.append((desc, answers, None))


class Layout:
    """A permutation from xgrad's layout to PyTorch's, with its inverse as .back."""

    def __init__(self, perm):
        self.perm, self.inverse = perm, tuple(np.argsort(perm))

    def __call__(self, a):
        return np.ascontiguousarray(a.transpose(self.perm))

    def back(self, a):
        return a.transpose(self.inverse)


IMAGE = Layout((0, 3, 1, 2))             # [N, H, W, C] -> [N, C, H, W]
# conv2d's w [KH, KW, C/g, F] -> [F, C/g, KH, KW]; conv_transpose2d's [KH, KW, F/g, C] -> [C, F/g, KH, KW]
KERNEL = Layout((3, 2, 0, 1))


class Plain:
    """The same layout on both sides."""

    def __call__(self, a):
        return np.ascontiguousarray(a)


PLAIN = Plain()


def draw(cases, rng, n_cases, float32):
    chans = [1, 2, 3, 16, 20, 32] if float32 else [1, 2, 3, 4, 6]
    to_img = lambda t: nhwc(t)
    for _ in range(n_cases):
        n, c = rng.randint(1, 3), rng.choice(chans)
        h, w = rng.randint(1, 12 if float32 else 7), rng.randint(1, 12 if float32 else 7)
        x = np.random.randn(n, h, w, c)
        # convolutions: strides, dilations, padding up to wider than the kernel, groups
        g = rng.choice([1, 1, 2]) if c % 2 == 0 else 1
        f = g * (rng.choice([1, 3, 16, 32]) if float32 else rng.randint(1, 3))
        kh, kw = rng.randint(1, 4), rng.randint(1, 4)
        sh, sw, dh, dw = rng.randint(1, 3), rng.randint(1, 3), rng.randint(1, 2), rng.randint(1, 2)
        ph, pw = rng.randint(0, 4), rng.randint(0, 4)
        wc = np.random.randn(kh, kw, c // g, f)
        cases.add(f"conv2d x{x.shape} w{wc.shape} stride {sh}x{sw} dilation {dh}x{dw} padding {ph}x{pw} groups {g}",
                  1, [sh, sw, dh, dw, ph, pw, g], [x, wc],
                  lambda a, b: F.conv2d(a, b, stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw), groups=g),
                  to_img, [IMAGE, KERNEL])
        oph, opw = rng.randint(0, sh - 1), rng.randint(0, sw - 1)  # xgrad refuses output_padding >= stride
        wt = np.random.randn(kh, kw, f // g, c)
        cases.add(f"conv_transpose2d x{x.shape} w{wt.shape} stride {sh}x{sw} dilation {dh}x{dw} padding {ph}x{pw} "
                  f"output_padding {oph}x{opw} groups {g}",
                  0, [sh, sw, dh, dw, ph, pw, oph, opw, g], [x, wt],
                  lambda a, b: F.conv_transpose2d(a, b, stride=(sh, sw), padding=(ph, pw), output_padding=(oph, opw),
                                                  groups=g, dilation=(dh, dw)),
                  to_img, [IMAGE, KERNEL])
        # pools (ties in max windows), adaptive pooling, resampling
        kh, kw, sh, sw = rng.randint(1, 4), rng.randint(1, 4), rng.randint(1, 3), rng.randint(1, 3)
        ph, pw, cip = rng.randint(0, kh // 2), rng.randint(0, kw // 2), rng.randint(0, 1)
        xt = np.round(x * 2) / 2
        cases.add(f"max_pool2d x{x.shape} kernel {kh}x{kw} stride {sh}x{sw} padding {ph}x{pw}", 2,
                  [kh, kw, sh, sw, ph, pw], [xt], lambda a: F.max_pool2d(a, (kh, kw), (sh, sw), (ph, pw)), to_img,
                  [IMAGE])
        cases.add(f"avg_pool2d x{x.shape} kernel {kh}x{kw} stride {sh}x{sw} padding {ph}x{pw} "
                  f"count_include_pad {cip}", 3, [kh, kw, sh, sw, ph, pw, cip], [x],
                  lambda a: F.avg_pool2d(a, (kh, kw), (sh, sw), (ph, pw), count_include_pad=bool(cip)), to_img, [IMAGE])
        oh, ow = rng.randint(1, 9), rng.randint(1, 9)
        cases.add(f"adaptive_avg_pool2d x{x.shape} -> {oh}x{ow}", 4, [oh, ow], [x],
                  lambda a: F.adaptive_avg_pool2d(a, (oh, ow)), to_img, [IMAGE])
        oh, ow, bil = rng.randint(1, 13), rng.randint(1, 13), rng.randint(0, 1)
        ac = rng.randint(0, 1) if bil else 0
        mode = "bilinear" if bil else "nearest"
        extra = {"align_corners": bool(ac)} if bil else {}
        cases.add(f"upsample2d {mode} align_corners {ac} x{x.shape} -> {oh}x{ow}", 5, [oh, ow, bil, ac], [x],
                  lambda a: F.interpolate(a, size=(oh, ow), mode=mode, **extra), to_img, [IMAGE])
        # normalisations
        # (PyTorch refuses a group of one value; xgrad normalises it to 0 + bias)
        groups = rng.choice([d for d in range(1, c + 1) if c % d == 0 and h * w * c // d > 1] or [0])
        gw, gb = np.random.randn(c), np.random.randn(c)
        if groups:
            cases.add(f"group_norm x{x.shape} groups {groups}", 6, [groups], [x, gw, gb],
                      lambda a, b, d: F.group_norm(a, groups, b, d), to_img, [IMAGE, PLAIN, PLAIN])
        k = rng.randint(1, 3)
        shape = [rng.randint(1, 5) for _ in range(rng.randint(k, 4))]
        v = np.random.randn(*shape)
        lw, lb = np.random.randn(*shape[-k:]), np.random.randn(*shape[-k:])
        cases.add(f"layer_norm x{tuple(shape)} over the last {k}", 7, [k], [v, lw, lb],
                  lambda a, b, d: F.layer_norm(a, tuple(shape[-k:]), b, d), lambda t: t, [PLAIN, PLAIN, PLAIN])
        # softmax along any axis, activations (values spread to reach their branches)
        axis = rng.randint(-len(shape), len(shape) - 1)
        v = np.random.randn(*shape) * 4
        cases.add(f"softmax x{tuple(shape)} axis {axis}", 8, [axis], [v], lambda a: F.softmax(a, axis), lambda t: t,
                  [PLAIN])
        cases.add(f"log_softmax x{tuple(shape)} axis {axis}", 9, [axis], [v], lambda a: F.log_softmax(a, axis),
                  lambda t: t, [PLAIN])
        approx = rng.randint(0, 1)
        cases.add(f"gelu {'tanh' if approx else 'none'} x{tuple(shape)}", 10, [approx], [v],
                  lambda a: F.gelu(a, approximate="tanh" if approx else "none"), lambda t: t, [PLAIN])
        cases.add(f"silu x{tuple(shape)}", 11, [], [v], F.silu, lambda t: t, [PLAIN])
        alpha = rng.choice([1.0, 0.5, 2.0])
        cases.add(f"elu alpha {alpha} x{tuple(shape)}", 12, [alpha], [v], lambda a: F.elu(a, alpha), lambda t: t,
                  [PLAIN])
        beta, thr = rng.choice([1.0, 2.0, 0.5]), rng.choice([20.0, 1.0, 5.0])
        cases.add(f"softplus beta {beta} threshold {thr} x{tuple(shape)}", 13, [beta, thr], [v],
                  lambda a: F.softplus(a, beta, thr), lambda t: t, [PLAIN])
        cases.add(f"hardswish x{tuple(shape)}", 14, [], [v], F.hardswish, lambda t: t, [PLAIN])
        slope = rng.choice([0.01, 0.2, 1.5])
        cases.add(f"leaky_relu slope {slope} x{tuple(shape)}", 15, [slope], [v], lambda a: F.leaky_relu(a, slope),
                  lambda t: t, [PLAIN])
        # attention [B, heads, L, E] against keys [B, heads, S, E]
        b_, hd, L, S, E, Ev = rng.randint(1, 2), rng.randint(1, 3), rng.randint(1, 6), rng.randint(1, 6), \
            rng.randint(1, 5), rng.randint(1, 5)
        causal = rng.randint(0, 1) if L <= S else 0  # a causal query with no key is a deliberate difference
        scale = rng.choice([0.0, 0.3])
        q, kk, vv = np.random.randn(b_, hd, L, E), np.random.randn(b_, hd, S, E), np.random.randn(b_, hd, S, Ev)
        cases.add(f"scaled_dot_product_attention q{q.shape} k{kk.shape} v{vv.shape} causal {causal} scale {scale}", 16,
                  [causal, scale], [q, kk, vv],
                  lambda a, b, d: F.scaled_dot_product_attention(a, b, d, is_causal=bool(causal),
                                                                 **({"scale": scale} if scale else {}))
                  if hasattr(F, "scaled_dot_product_attention") else reference_attention(a, b, d, causal, scale),
                  lambda t: t, [PLAIN, PLAIN, PLAIN])
        # cross entropy with class indices and label smoothing, mean over the batch
        rows, classes, eps = rng.randint(1, 6), rng.randint(2, 6), rng.choice([0.0, 0.1])
        logits, labels = np.random.randn(rows, classes) * 3, np.array([rng.randrange(classes) for _ in range(rows)])
        cases.add(f"cross_entropy logits{logits.shape} label_smoothing {eps}", 17, [eps], [logits],
                  lambda a: F.cross_entropy(a, torch.tensor(labels), label_smoothing=eps), lambda t: t, [PLAIN],
                  target=labels.astype(np.float64))
        # regression and binary losses, each reduction
        red = rng.randint(0, 2)
        rname = ["mean", "sum", "none"][red]
        v, t = np.random.randn(*shape) * 2, np.random.randn(*shape) * 2
        for code, name, fn in ((18, "mse_loss", F.mse_loss), (19, "l1_loss", F.l1_loss)):
            cases.add(f"{name} {rname} x{tuple(shape)}", code, [red], [v],
                      lambda a, fn=fn: fn(a, torch.tensor(t, dtype=a.dtype), reduction=rname), lambda y: y, [PLAIN],
                      target=t)
        delta = rng.choice([1.0, 0.5, 2.5])
        cases.add(f"huber_loss delta {delta} {rname} x{tuple(shape)}", 20, [red, delta], [v],
                  lambda a: F.huber_loss(a, torch.tensor(t, dtype=a.dtype), reduction=rname, delta=delta),
                  lambda y: y, [PLAIN], target=t)
        cases.add(f"smooth_l1_loss beta {delta} {rname} x{tuple(shape)}", 21, [red, delta], [v],
                  lambda a: F.smooth_l1_loss(a, torch.tensor(t, dtype=a.dtype), reduction=rname, beta=delta),
                  lambda y: y, [PLAIN], target=t)
        prob, t01 = 1 / (1 + np.exp(-v)), np.random.rand(*shape)
        cases.add(f"binary_cross_entropy {rname} x{tuple(shape)}", 22, [red], [prob],
                  lambda a: F.binary_cross_entropy(a, torch.tensor(t01, dtype=a.dtype), reduction=rname),
                  lambda y: y, [PLAIN], target=t01)
        cases.add(f"binary_cross_entropy_with_logits {rname} x{tuple(shape)}", 23, [red], [v * 5],
                  lambda a: F.binary_cross_entropy_with_logits(a, torch.tensor(t01, dtype=a.dtype), reduction=rname),
                  lambda y: y, [PLAIN], target=t01)
        # batch norm in training mode over [N, H, W, C] (channels last, as xgrad's layout)
        eps = rng.choice([1e-5, 1e-3])
        if n * h * w > 1:
            cases.add(f"batch_norm x{x.shape} eps {eps}", 24, [eps], [x, gw, gb],
                      lambda a, b, d: F.batch_norm(a, torch.zeros(c, dtype=a.dtype), torch.ones(c, dtype=a.dtype), b, d,
                                                   training=True, eps=eps),
                      to_img, [IMAGE, PLAIN, PLAIN])
        # products: batched and broadcast matmul, linear (xgrad's weight is [in, out]), embedding
        m_, k_, n_ = rng.randint(1, 6), rng.randint(1, 6), rng.randint(1, 6)
        batch = [rng.randint(1, 3) for _ in range(rng.randint(0, 2))]
        bb = batch if rng.randint(0, 1) else []
        a_, b2 = np.random.randn(*batch, m_, k_), np.random.randn(*bb, k_, n_)
        cases.add(f"matmul {a_.shape} @ {b2.shape}", 25, [], [a_, b2], torch.matmul, lambda y: y, [PLAIN, PLAIN])
        lw, lb = np.random.randn(k_, n_), np.random.randn(n_)
        cases.add(f"linear x{a_.shape} w{lw.shape}", 26, [], [a_, lw, lb], lambda a, b, d: F.linear(a, b.T, d),
                  lambda y: y, [PLAIN, PLAIN, PLAIN])
        table, cols = np.random.randn(rng.randint(1, 6), rng.randint(1, 4)), rng.randint(1, 4)
        idx = np.array([[rng.randrange(table.shape[0]) for _ in range(cols)] for _ in range(rng.randint(1, 3))])
        cases.add(f"embedding {idx.shape} of table{table.shape}", 27, [], [table],
                  lambda a: F.embedding(torch.tensor(idx), a), lambda y: y, [PLAIN], target=idx.astype(np.float64))
        # reductions over random axes (no ties for max: continuous values), elementwise
        v = np.random.randn(*shape)
        axes = sorted(rng.sample(range(len(shape)), rng.randint(1, len(shape))))
        keep = rng.randint(0, 1)
        for code, name, fn in ((28, "sum", lambda a: a.sum(dim=axes, keepdim=bool(keep))),
                               (29, "mean", lambda a: a.mean(dim=axes, keepdim=bool(keep))),
                               (30, "max", lambda a: torch.amax(a, dim=axes, keepdim=bool(keep)))):
            cases.add(f"{name} x{tuple(shape)} axes {axes} keepdims {keep}", code, [keep] + axes, [v], fn,
                      lambda y: y, [PLAIN])
        lo, hi = sorted([rng.uniform(-1.5, 1.5), rng.uniform(-1.5, 1.5)])
        cases.add(f"clamp [{lo:.2f}, {hi:.2f}] x{tuple(shape)}", 31, [lo, hi], [v], lambda a: a.clamp(lo, hi),
                  lambda y: y, [PLAIN])
        e = rng.choice([2.0, 3.0, 0.5, -1.5, 1.0])
        pos = np.abs(v) + 0.1
        cases.add(f"pow {e} x{tuple(shape)}", 32, [e], [pos], lambda a: a ** e, lambda y: y, [PLAIN])
        cases.add(f"sqrt x{tuple(shape)}", 33, [], [pos], torch.sqrt, lambda y: y, [PLAIN])
        cases.add(f"abs x{tuple(shape)}", 34, [], [v], torch.abs, lambda y: y, [PLAIN])
        cases.add(f"pow(a, b) x{tuple(shape)}", 35, [], [pos, v], torch.pow, lambda y: y, [PLAIN, PLAIN])
        # cross entropy and nll_loss with class weights and an ignored label (never every label)
        wts = [rng.uniform(0.2, 2.0) for _ in range(classes)]
        ignore = rng.randrange(classes) if rng.randint(0, 1) else -1
        labels2 = labels.copy()
        if ignore >= 0 and (labels2 == ignore).all():
            labels2[0] = (ignore + 1) % classes
        nll = rng.randint(0, 1)
        logp = torch.log_softmax(torch.tensor(logits), 1).numpy() if nll else logits
        fn = F.nll_loss if nll else F.cross_entropy
        cases.add(f"{'nll_loss' if nll else 'cross_entropy'} weights ignore_index {ignore} logits{logits.shape}", 36,
                  [nll, ignore] + wts, [logp],
                  lambda a: fn(a, torch.tensor(labels2), weight=torch.tensor(wts, dtype=a.dtype),
                               ignore_index=ignore if ignore >= 0 else -100),
                  lambda y: y, [PLAIN], target=labels2.astype(np.float64))
        # recurrent layers with PyTorch's parameters: layers, directions, one step or several
        gru, layers, bidir = rng.randint(0, 1), rng.randint(1, 2), rng.randint(0, 1)
        steps, size, hidden = rng.randint(1, 5), rng.randint(1, 4), rng.randint(1, 4)
        cases.add_recurrent(f"{'GRU' if gru else 'LSTM'} x[{n}, {steps}, {size}] hidden {hidden} layers {layers} "
                            f"bidirectional {bidir}", gru, n, steps, size, hidden, layers, bidir)
        # instance norm (affine), and a stride-1 conv with same padding (dilated too)
        if h * w > 1:
            cases.add(f"instance_norm x{x.shape} eps {eps}", 37, [eps], [x, gw, gb],
                      lambda a, b, d: F.instance_norm(a, weight=b, bias=d, eps=eps), to_img, [IMAGE, PLAIN, PLAIN])
        cases.add(f"conv2d same x{x.shape} w{wc.shape} dilation {dh}x{dw}", 38, [dh, dw], [x, wc] if g == 1 else
                  [x, np.random.randn(kh, kw, c, f)],
                  lambda a, b: F.conv2d(a, b, padding="same", dilation=(dh, dw)), to_img, [IMAGE, KERNEL])


def reference_attention(q, k, v, causal, scale):
    """PyTorch 1.13 has no F.scaled_dot_product_attention: its definition, in ops."""
    s = q @ k.transpose(-2, -1) * (scale if scale else 1 / np.sqrt(q.shape[-1]))
    if causal:
        L, S = q.shape[-2], k.shape[-2]
        s = s.masked_fill(torch.ones(L, S, dtype=torch.bool).triu(1), float("-inf"))
    return torch.softmax(s, -1) @ v


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=300, help="draws per op family")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--float32", action="store_true", help="float32 on both sides, wider channels")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)  # PyTorch notes on its own kernels
    rng = random.Random(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    dtype = torch.float32 if args.float32 else torch.float64
    cases = Cases(dtype)
    draw(cases, rng, args.cases, args.float32)
    tool = os.path.join(os.environ.get("XGRAD_BUILD", os.path.join(ROOT, "build")), "tools", "torch_check")
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "in.npz"), os.path.join(tmp, "out.npz")
        np.savez(src, **cases.arrays)
        subprocess.run([tool, src, dst] + (["--float32"] if args.float32 else []), check=True,
                       stdout=subprocess.DEVNULL)
        got = dict(np.load(dst))
    tol = 1e-5 if args.float32 else 1e-9
    bad = 0
    for i, (desc, want, refusal) in enumerate(cases.expect):
        err = got.get(f"err_{i}")
        if want is None:
            if err is None:
                print(f"PyTorch refuses, xgrad runs: {desc} (PyTorch: {refusal})")
                bad += 1
            continue
        if err is not None:
            print(f"xgrad refuses, PyTorch runs: {desc} (xgrad: {bytes(err).decode()[:200]})")
            bad += 1
            continue
        for name, w in want[0].items():
            g = got.get(name if "/" in name else f"{name}_{i}")
            if g is None:
                print(f"{name} missing: {desc}")
                bad += 1
                continue
            scale = max(1.0, float(np.abs(w).max())) if w.size else 1.0
            # float32: as close to the float64 answer as PyTorch's own float32 answer is (x4), or tol
            slack = 4 * float(np.abs(want[1][name] - w).max()) if len(want) > 1 and w.size else 0.0
            if g.shape != w.shape or not np.allclose(g, w, rtol=tol, atol=max(tol * scale, slack), equal_nan=True):
                diff = np.abs(g - w).max() if g.shape == w.shape else f"shape {g.shape} against {w.shape}"
                print(f"{name} differs: {desc}: {diff}")
                bad += 1
    print(f"{len(cases.expect)} cases ({'float32' if args.float32 else 'float64'}, seed {args.seed}), "
          f"{bad} differences from PyTorch {torch.__version__}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
