#!/usr/bin/env python3
"""PyTorch + PEFT LoRA DPO baseline for scripts/gpu-check.sh.

The same work as `align_gpu bench`: a random-init Llama of the given shape
(bf16 weights: bitsandbytes is absent on the GPU host, so no 4-bit), LoRA
rank r on q/k/v/o, one DPO pair per step (chosen + rejected, T tokens each,
the last 7/8 scored), the reference log-probs computed once with the adapter
disabled, AdamW. Prints one line and writes one JSON row.

    python3 scripts/gpu_bench_torch.py --shape 8b --tokens 512 --steps 8 --json out.json
"""
import argparse
import json
import math
import sys
import time

SHAPES = {
    # Llama 3.2 1B and Llama 3.1 8B (native/src/modelgen.cpp writes the same)
    "1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=128256),
    "8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=128256),
    # a smoke shape for a quick run
    "tiny": dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=2048),
}


def flop_per_token(s, tokens):
    """LoRA training on a frozen base, as align_gpu bench counts it: forward
    2N plus input gradient 2N over the matmul weights, plus attention
    (12·L·d·T); LoRA terms ignored."""
    d, L, ff, V = s["hidden_size"], s["num_hidden_layers"], s["intermediate_size"], s["vocab_size"]
    hd = d // s["num_attention_heads"]
    n_mat = L * (d * hd * (s["num_attention_heads"] + 2 * s["num_key_value_heads"]) + d * d + 3 * d * ff) + d * V
    return 4.0 * n_mat + 12.0 * L * d * tokens


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", choices=sorted(SHAPES), default="1b")
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--peak-tflops", type=float, default=989.0)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--json")
    a = ap.parse_args()

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    s = SHAPES[a.shape]
    T = a.tokens
    prompt = T // 8
    cfg = LlamaConfig(max_position_embeddings=8192, rms_norm_eps=1e-5, rope_theta=10000.0,
                      tie_word_embeddings=False, attn_implementation="sdpa", **s)
    dev = torch.device(a.device)
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with dev:
        model = LlamaForCausalLM(cfg)
    torch.set_default_dtype(torch.float32)
    model.requires_grad_(False)
    lcfg = LoraConfig(r=a.rank, lora_alpha=2 * a.rank, lora_dropout=0.0,
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    model = get_peft_model(model, lcfg)
    # LoRA parameters in F32 (as align keeps them), base in bf16
    for n, p in model.named_parameters():
        if p.requires_grad:
            p.data = p.data.float()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)

    gen = torch.Generator(device="cpu").manual_seed(5)
    ids = torch.randint(300, min(s["vocab_size"], 30300), (2, T), generator=gen).to(dev)

    def seq_logps(m):
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            logits = m(input_ids=ids).logits[:, prompt - 1:T - 1]
        lp = torch.log_softmax(logits.float(), dim=-1)
        return lp.gather(-1, ids[:, prompt:, None]).squeeze(-1).sum(-1)  # (2,)

    with torch.no_grad(), model.disable_adapter():
        ref = seq_logps(model)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        weights_gib = torch.cuda.memory_allocated() / 2**30
        torch.cuda.reset_peak_memory_stats()
    else:
        weights_gib = 0.0
    times = []
    loss_v = 0.0
    for step in range(a.steps + 2):
        t0 = time.perf_counter()
        pol = seq_logps(model)
        h = (pol[0] - ref[0]) - (pol[1] - ref[1])
        loss = -torch.nn.functional.logsigmoid(a.beta * h)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss_v = float(loss.detach())  # synchronises
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if step >= 2:
            times.append(time.perf_counter() - t0)
    step_s = sum(times) / len(times)
    tok_s = 2 * T / step_s
    fpt = flop_per_token(s, T)
    mfu = tok_s * fpt / (a.peak_tflops * 1e12) if a.peak_tflops > 0 else 0.0
    mem = torch.cuda.max_memory_reserved() / 2**30 if dev.type == "cuda" else 0.0
    row = {"engine": "pytorch+peft", "label": f"{a.shape}-bf16", "shape": a.shape, "base_type": "bf16",
           "device": str(dev), "torch": torch.__version__, "n_layer": s["num_hidden_layers"],
           "n_embd": s["hidden_size"], "tokens_per_step": 2 * T, "steps": len(times), "tokens_per_s": round(tok_s, 2),
           "s_per_step": round(step_s, 4), "mfu": round(mfu, 4), "peak_tflops": a.peak_tflops,
           "flop_per_token": fpt, "mem_gib": round(mem, 3), "weights_gib": round(weights_gib, 3),
           "gradient_checkpointing": False, "loss": round(loss_v, 5)}
    print(f"bench pytorch+peft {a.shape} bf16: {tok_s:.1f} tokens/s, {step_s:.3f} s/step, MFU {mfu:.3f}, "
          f"peak reserved {mem:.2f} GiB (weights {weights_gib:.2f}), loss {loss_v:.4f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(row, f)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
