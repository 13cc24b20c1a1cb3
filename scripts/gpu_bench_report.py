#!/usr/bin/env python3
"""Joins the benchmark rows of scripts/gpu-check.sh into bench.json, prints
the align vs PyTorch + PEFT table and a 70B memory estimate computed from the
measured per-layer costs of the 8B (else the largest) align Q4_K row.

    python3 scripts/gpu_bench_report.py ROWS.jsonl OUT/bench.json
"""
import json
import sys

# Llama 3.1 70B: d 8192, 80 layers, n_ff 28672, 64 heads, 8 KV heads, vocab 128256
L70 = dict(n_embd=8192, n_layer=80, n_ff=28672, n_head=64, n_kv=8, n_vocab=128256)


def params_of(d, L, ff, n_head, n_kv, V):
    hd = d // n_head
    return L * (d * hd * (n_head + 2 * n_kv) + d * d + 3 * d * ff + 2 * d) + 2 * d * V + d


def estimate_70b(r):
    """70B DPO (2 x tokens) memory from an align row's measured costs."""
    d, L, ff = r["n_embd"], r["n_layer"], r["n_ff"]
    n_head = r.get("n_head", 32)
    n_kv = r.get("n_head_kv", 8)
    p_src = r.get("base_params") or params_of(d, L, ff, n_head, n_kv, r["n_vocab"])
    bpp = r["base_bytes"] / p_src  # bytes per parameter of this base type, as stored
    p70 = params_of(L70["n_embd"], L70["n_layer"], L70["n_ff"], L70["n_head"], L70["n_kv"], L70["n_vocab"])
    weights = p70 * bpp / 2**30
    # per-layer activations: every (n_embd, N), (n_ff, N) and (T, T, heads)
    # tensor doubles from 8B to 70B (8192/4096, 28672/14336, 64/32 heads)
    scale = max(L70["n_embd"] / d, L70["n_ff"] / ff, L70["n_head"] / n_head)
    if r.get("recompute"):
        # recompute: the layer inputs kept (n_embd x N each, growing with d and
        # the layer count) plus the largest piece, one layer's forward and
        # backward (growing like one layer's activations)
        act = r["checkpoint_gib"] * (L70["n_embd"] / d) * (L70["n_layer"] / L) + r["body_compute_gib"] * scale
        note = "recompute (gradient checkpointing): layer inputs kept, one layer's activations at a time"
    else:
        act = r["per_layer_compute_gib"] * scale * L70["n_layer"]
        note = "no activation recompute: every layer's activations are kept for the backward"
    head = r["head_compute_gib"]  # same vocabulary, same chunk
    # adapters (q,k,v,o) grow with d and layer count; trainer_gib holds them
    lora = r["trainer_gib"] * (L70["n_embd"] / d) * (L70["n_layer"] / L)
    other = max(0.0, r["steps_gib"] - r["body_compute_gib"] - r["head_compute_gib"] - r.get("checkpoint_gib", 0.0))  # pools, cuBLAS workspaces, tiles
    total = weights + act + head + lora + other
    return {"from": r["label"], "params": p70, "bytes_per_param": round(bpp, 4), "weights_gib": round(weights, 2),
            "activations_gib": round(act, 2), "head_gib": round(head, 2), "adapters_gib": round(lora, 3),
            "other_gib": round(other, 2), "total_gib": round(total, 2),
            "note": note}


def main():
    rows_path, out_path = sys.argv[1], sys.argv[2]
    rows = []
    with open(rows_path) as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    print(f"{'engine':<14} {'model':<12} {'tokens/s':>10} {'s/step':>8} {'MFU':>7} {'mem GiB':>8}")
    for r in rows:
        print(f"{r['engine']:<14} {r['label']:<12} {r['tokens_per_s']:>10.1f} {r['s_per_step']:>8.3f} "
              f"{r['mfu']:>7.3f} {r['mem_gib']:>8.2f}")
    # align vs PyTorch per shape
    ratios = []
    for shape in ("1b", "8b", "tiny"):
        pt = [r for r in rows if r["engine"] != "align" and r.get("shape") == shape]
        al = [r for r in rows if r["engine"] == "align" and r["label"].startswith(shape)]
        for r in al:
            if pt:
                q = {"shape": shape, "align": r["label"], "speed_vs_pytorch": round(r["tokens_per_s"] / pt[0]["tokens_per_s"], 3),
                     "memory_vs_pytorch": round(r["mem_gib"] / pt[0]["mem_gib"], 3) if pt[0]["mem_gib"] > 0 else None}
                ratios.append(q)
                print(f"{r['label']}: {q['speed_vs_pytorch']}x PyTorch tokens/s at {q['memory_vs_pytorch']}x its memory "
                      f"(goal >= 1.5x at <= 0.5x)")
    # from the largest Q4_K shape, with recompute (the setting a 70B run
    # needs) where that row exists, and without
    src = [r for r in rows if r["engine"] == "align" and "q4_k" in r["label"]]
    src.sort(key=lambda r: (r["n_layer"] * r["n_embd"], bool(r.get("recompute"))))
    ests = []
    if src:
        big = [r for r in src if r["n_layer"] * r["n_embd"] == src[-1]["n_layer"] * src[-1]["n_embd"]]
        ests = [estimate_70b(r) for r in big]
    for est in ests:
        print(f"70B Q4_K DPO estimate from {est['from']}: {est['total_gib']} GiB "
              f"(weights {est['weights_gib']}, activations {est['activations_gib']}, head {est['head_gib']}, "
              f"adapters {est['adapters_gib']}, other {est['other_gib']}; goal <= 48; {est['note']})")
    est = ests[-1] if ests else None
    with open(out_path, "w") as f:
        json.dump({"rows": rows, "ratios": ratios, "estimate_70b": est, "estimates_70b": ests}, f, indent=1)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
