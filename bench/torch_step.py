"""PyTorch twin of bench/step-worker.ts: the same model, step and sizes, for a side-by-side ms/step comparison.

    python3 bench/torch_step.py '<spec JSON from bench/step-configs.ts>' <kind> <torch threads> [packed]

OpenBLAS's own thread count comes from the environment (OPENBLAS_NUM_THREADS), set by bench/step.ts per setting.
Prints `ready` after two warm-up steps; then each `step` line on stdin runs one step and answers {"ms": ...};
`rss` answers {"peakRssMiB": ...} (this process's VmHWM); end of input exits.

Classifier (task "classifier"): frequency-normalized embedding (paper Eq. 1) -> variational embedding dropout ->
nn.LSTM over the padded batch (or, with `packed`, over a PackedSequence that skips the padding), the state at each row's
last token (its EOS) -> ReLU(30) -> 1 logit; Adam; global-norm
clipping of all but the embedding; EMA of every weight. Kinds:
  supervised   NLL on the labeled batch
  adversarial  NLL + NLL(e + r_adv)
  virtual      NLL on the labeled batch + VAT on the unlabeled batch (1 power iteration)
LM (task "lm"): the same embedding and LSTM (state carried between steps, detached), a sampled softmax over K unique
unigram-sampled candidates drawn once per step with the log-expected-count correction and accidental hits removed;
bidirectional adds a reverse LSTM and head over the reversed rows. Adam (foreach), clipping, EMA (foreach).
"""
import json
import sys
import time

import torch
import torch.nn.functional as F


def peak_rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def scale_l2(x, eps):
    alpha = x.abs().amax(dim=(1, 2), keepdim=True)
    unit = x / torch.where(alpha > 0, alpha, torch.ones_like(alpha))
    return eps * unit / unit.pow(2).sum(dim=(1, 2), keepdim=True).clamp_min(1).sqrt()


def normalized(emb, freq):
    mean = (freq[:, None] * emb).sum(0, keepdim=True)
    var = (freq[:, None] * (emb - mean) ** 2).sum(0, keepdim=True)
    return (emb - mean) / torch.sqrt(var + 1e-6)


class Updates:
    """Adam (foreach: one multi-tensor pass per op, PyTorch's fastest CPU form here), clipping and the EMA."""

    def __init__(self, params, clipped):
        self.params = params
        self.clipped = clipped
        self.opt = torch.optim.Adam(params, lr=5e-4, foreach=True)
        self.ema = [p.detach().clone() for p in params]

    def apply(self):
        torch.nn.utils.clip_grad_norm_(self.clipped, 1.0)
        self.opt.step()
        with torch.no_grad():
            torch._foreach_mul_(self.ema, 0.999)
            torch._foreach_add_(self.ema, [p.detach() for p in self.params], alpha=0.001)


def classifier(spec, kind, packed=False):
    V, E, H = spec["V"], spec["E"], spec["H"]
    emb = torch.nn.Parameter(torch.empty(V, E).uniform_(-1, 1))
    freq = torch.full((V,), 1.0 / V)
    lstm = torch.nn.LSTM(E, H, batch_first=True)
    hidden = torch.nn.Linear(H, 30)
    out = torch.nn.Linear(30, 1)
    params = [emb, *lstm.parameters(), *hidden.parameters(), *out.parameters()]
    updates = Updates(params, [p for p in params if p is not emb])

    def rows(lengths):
        lengths = torch.tensor(lengths)
        ids = torch.randint(0, V - 1, (len(lengths), int(lengths.max())))
        ids[torch.arange(len(lengths)), lengths - 1] = V - 1
        # VAT's random direction lives on the words: not on EOS, not on padding.
        word_mask = (torch.arange(ids.shape[1])[None, :] < (lengths - 1)[:, None]).float()[:, :, None]
        return ids, lengths - 1, word_mask

    ids_l, last_l, _ = rows(spec["labeledLengths"])
    ids_u, last_u, mask_u = rows(spec["unlabeledLengths"])
    labels = torch.randint(0, 2, (ids_l.shape[0],)).float()

    def embed(t, ids):
        mask = (torch.rand(ids.shape[0], 1, E) < 0.5).float() / 0.5
        return F.embedding(ids, t) * mask

    def logits(e, last):
        if packed:
            _, (h, _) = lstm(torch.nn.utils.rnn.pack_padded_sequence(e, last + 1, batch_first=True, enforce_sorted=False))
            return out(F.relu(hidden(h[-1]))).squeeze(1)
        y, _ = lstm(e)
        return out(F.relu(hidden(y[torch.arange(y.shape[0]), last]))).squeeze(1)

    def nll(e):
        return F.binary_cross_entropy_with_logits(logits(e, last_l), labels)

    def kl(q_logit, p_logit):
        q = torch.sigmoid(q_logit)
        return (q * (F.logsigmoid(q_logit) - F.logsigmoid(p_logit)) + (1 - q) * (F.logsigmoid(-q_logit) - F.logsigmoid(-p_logit))).mean()

    def step():
        updates.opt.zero_grad()
        t = normalized(emb, freq)
        e = embed(t, ids_l)
        loss = nll(e)
        if kind == "adversarial":
            g, = torch.autograd.grad(loss, e, retain_graph=True)
            loss = loss + nll(e + scale_l2(g.detach(), 5.0))
        if kind == "virtual":
            eu = embed(t, ids_u)
            with torch.no_grad():
                q = logits(eu, last_u)
            d = scale_l2(torch.randn_like(eu) * mask_u, 0.1).requires_grad_()
            g, = torch.autograd.grad(kl(q, logits(eu.detach() + d, last_u)), d)
            loss = loss + kl(q, logits(eu + scale_l2(g, 5.0), last_u))
        loss.backward()
        updates.apply()

    return step


def language_model(spec):
    V, D, H, B, T, K = spec["V"], spec["D"], spec["H"], spec["B"], spec["T"], spec["K"]
    directions = 2 if spec["bidirectional"] else 1
    counts = torch.tensor([max(1, round(1e6 / (i + 1))) for i in range(V)], dtype=torch.float64)
    probs = counts / counts.sum()
    freq = probs.float()
    emb = torch.nn.Parameter(torch.empty(V, D).uniform_(-1, 1))
    lstms = [torch.nn.LSTM(D, H, batch_first=True) for _ in range(directions)]
    heads = [(torch.nn.Parameter(torch.empty(V, H).uniform_(-0.02, 0.02)), torch.nn.Parameter(torch.zeros(V))) for _ in range(directions)]
    params = [emb, *[p for l in lstms for p in l.parameters()], *[p for h in heads for p in h]]
    updates = Updates(params, [p for p in params if p is not emb])
    state = [(torch.zeros(1, B, H), torch.zeros(1, B, H)) for _ in range(directions)]
    log_v = torch.log(torch.tensor(float(V)))

    def zipf_ids():
        return torch.clamp(torch.exp(torch.rand(B, T + 1) * log_v).long(), max=V - 1)

    def log_expected(ids, tries):
        p = probs[ids]
        return torch.log(-torch.expm1(tries * torch.log1p(-p))).float()

    def step():
        updates.opt.zero_grad()
        table = normalized(emb, freq)
        seq = zipf_ids()
        candidates = torch.multinomial(probs, K, replacement=False)
        log_q_sampled = log_expected(candidates, K)
        loss = 0
        for i in range(directions):
            rows = seq if i == 0 else seq.flip(1)
            inputs, targets = rows[:, :-1], rows[:, 1:].reshape(-1)
            mask = (torch.rand(B, 1, D) < 0.5).float() / 0.5
            y, (h, c) = lstms[i](F.embedding(inputs, table) * mask, state[i])
            state[i] = (h.detach(), c.detach())
            hidden = y.reshape(-1, H)
            W, b = heads[i]
            # F.embedding for the row gathers: its dense backward is PyTorch's fastest CPU path for them.
            true_logit = (hidden * F.embedding(targets, W)).sum(1) + F.embedding(targets, b[:, None])[:, 0] - log_expected(targets, K)
            sampled = hidden @ F.embedding(candidates, W).t() + F.embedding(candidates, b[:, None])[:, 0] - log_q_sampled
            sampled = sampled.masked_fill(candidates[None, :] == targets[:, None], float("-inf"))
            logits = torch.cat([true_logit[:, None], sampled], 1)
            loss = loss + F.cross_entropy(logits, torch.zeros(len(targets), dtype=torch.long))
        loss.backward()
        updates.apply()

    return step


def main():
    spec = json.loads(sys.argv[1])
    kind = sys.argv[2]
    torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 2)
    torch.manual_seed(0)
    packed = len(sys.argv) > 4 and sys.argv[4] == "packed"
    step = language_model(spec) if spec["task"] == "lm" else classifier(spec, kind, packed)
    step()
    step()
    print("ready", flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "step":
            t0 = time.perf_counter()
            step()
            print(json.dumps({"ms": (time.perf_counter() - t0) * 1000}), flush=True)
        elif command == "rss":
            print(json.dumps({"peakRssMiB": peak_rss_mib()}), flush=True)
        elif command == "quit":
            break


if __name__ == "__main__":
    main()
