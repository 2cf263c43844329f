"""PyTorch twin of bench/step.ts: the same model and step types, for a side-by-side ms/step comparison.

Model: frequency-normalized embedding (paper Eq. 1) -> variational embedding dropout -> nn.LSTM -> last step ->
ReLU(30) -> 1 logit; Adam; global-norm clipping of non-embedding grads. Steps:
  supervised   NLL on the labeled batch B
  adversarial  NLL + NLL(e + r_adv)
  virtual      NLL on B + VAT on the unlabeled batch U (1 power iteration)
Prints one JSON line: {"config": {...}, "ms": {"supervised": ..., "adversarial": ..., "virtual": ...}, "torch": ...}.
"""
import json
import resource
import sys
import time

import torch
import torch.nn.functional as F


def scale_l2(x, eps):
    alpha = x.abs().amax(dim=(1, 2), keepdim=True)
    unit = x / torch.where(alpha > 0, alpha, torch.ones_like(alpha))
    return eps * unit / unit.pow(2).sum(dim=(1, 2), keepdim=True).clamp_min(1).sqrt()


def peak_rss_mib():
    # VmHWM is this process's own peak; ru_maxrss would include the parent's peak inherited at fork.
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    V, E, H, B, U, T = (int(v) for v in sys.argv[1].split(","))
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    emb = torch.nn.Parameter(torch.empty(V, E).uniform_(-1, 1))
    freq = torch.full((V,), 1.0 / V)
    lstm = torch.nn.LSTM(E, H, batch_first=True)
    hidden = torch.nn.Linear(H, 30)
    out = torch.nn.Linear(30, 1)
    params = [emb, *lstm.parameters(), *hidden.parameters(), *out.parameters()]
    clipped = [p for p in params if p is not emb]
    opt = torch.optim.Adam(params, lr=5e-4)
    ids_l = torch.randint(0, V, (B, T))
    ids_u = torch.randint(0, V, (U, T))
    labels = torch.randint(0, 2, (B,)).float()
    eos_mask = torch.ones(1, T, 1)
    eos_mask[:, -1] = 0

    def table():
        mean = (freq[:, None] * emb).sum(0, keepdim=True)
        var = (freq[:, None] * (emb - mean) ** 2).sum(0, keepdim=True)
        return (emb - mean) / torch.sqrt(var + 1e-6)

    def embed(t, ids):
        mask = (torch.rand(ids.shape[0], 1, E) < 0.5).float() / 0.5
        return t[ids] * mask

    def logits(e):
        y, _ = lstm(e)
        return out(F.relu(hidden(y[:, -1]))).squeeze(1)

    def nll(e):
        return F.binary_cross_entropy_with_logits(logits(e), labels)

    def kl(q_logit, p_logit):
        q = torch.sigmoid(q_logit)
        return (q * (F.logsigmoid(q_logit) - F.logsigmoid(p_logit)) + (1 - q) * (F.logsigmoid(-q_logit) - F.logsigmoid(-p_logit))).mean()

    def step(kind):
        opt.zero_grad()
        t = table()
        e = embed(t, ids_l)
        loss = nll(e)
        if kind == "adversarial":
            g, = torch.autograd.grad(loss, e, retain_graph=True)
            loss = loss + nll(e + scale_l2(g.detach(), 5.0))
        if kind == "virtual":
            eu = embed(t, ids_u)
            with torch.no_grad():
                q = logits(eu)
            d = scale_l2(torch.randn_like(eu) * eos_mask, 0.1).requires_grad_()
            g, = torch.autograd.grad(kl(q, logits(eu.detach() + d)), d)
            loss = loss + kl(q, logits(eu + scale_l2(g, 5.0)))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(clipped, 1.0)
        opt.step()

    ms = {}
    for kind in ("supervised", "adversarial", "virtual"):
        step(kind)  # warm-up
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            step(kind)
            times.append((time.perf_counter() - t0) * 1000)
        ms[kind] = sorted(times)[len(times) // 2]
    print(json.dumps({"config": {"V": V, "E": E, "H": H, "B": B, "U": U, "T": T}, "ms": ms, "torch": torch.__version__, "threads": threads,
                      "peakRssMiB": peak_rss_mib()}))


if __name__ == "__main__":
    main()
