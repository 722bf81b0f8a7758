"""Self-play generation: azr.rl.selfplay.generate (batched, KV-cached) against prompt-by-prompt sampling with a
full forward pass per token and no cache, as the original trainer generated."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import torch

from azr.models.causal_lm import max_length_of
from azr.rl.selfplay import PROMPT_FRACTION, generate

from .common import Bench, Entry, alternate, progress, synchronize
from .loops import CONFIG


@torch.no_grad()
def uncached_generate(model: torch.nn.Module, prompts: torch.Tensor, max_new_tokens: int, temperature: float,
                      top_k: int, eos_token_id: int) -> int:
    """Sample a continuation of each prompt in turn, one full forward per new token; return the tokens made."""
    was_training = model.training
    model.eval()
    made = 0
    for prompt in prompts:
        sequence = prompt.unsqueeze(0)
        for _ in range(max_new_tokens):
            logits = model(input_ids=sequence).logits[:, -1].float() / temperature
            if top_k:
                kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            token = torch.multinomial(torch.softmax(logits, dim=-1), 1)
            sequence = torch.cat([sequence, token], dim=1)
            made += 1
            if int(token) == eos_token_id:
                break
    model.train(was_training)
    return made


def run(bench: Bench) -> list[Entry]:
    """Alternate the two ways of generating the trainer's self-play rollouts; report generated tokens per second."""
    model = bench.model()
    prompt_len = max(1, bench.seq_len // PROMPT_FRACTION)
    new_tokens = max(1, min(CONFIG.gen_max_new_tokens, max_length_of(model) - prompt_len))
    batch = CONFIG.self_play_batch
    prompts = [bench.windows.train[k * batch:(k + 1) * batch, :prompt_len].to(bench.device)
               for k in range(bench.sizes.gen_rollouts)]
    eos, pad = bench.tokenizer.eos_token_id, bench.tokenizer.pad_token_id

    def cached() -> float:
        return _rate(lambda: [int(generate(model, p, new_tokens, CONFIG.temperature, CONFIG.top_k, eos, pad)
                                  .mask.sum()) for p in _seeded(prompts)], bench)

    def uncached() -> float:
        return _rate(lambda: [uncached_generate(model, p, new_tokens, CONFIG.temperature, CONFIG.top_k, eos)
                              for p in _seeded(prompts)], bench)

    progress("self-play generation: batched with KV cache, prompt by prompt without cache")
    samples = alternate({"kv_cached_batched": cached, "uncached_per_prompt": uncached}, bench.sizes.repeats)
    return [bench.entry("selfplay_generation", samples, "tokens/s", "kv_cached_batched", "uncached_per_prompt",
                        (">=", 3.0), prompts_per_rollout=batch, prompt_tokens=prompt_len, max_new_tokens=new_tokens,
                        rollouts_per_sample=bench.sizes.gen_rollouts)]


def _seeded(prompts: list[torch.Tensor]) -> Iterator[torch.Tensor]:
    """Yield the prompt batches, seeding torch before each so that both contenders sample alike."""
    for seed, batch in enumerate(prompts):
        torch.manual_seed(seed)
        yield batch


def _rate(make: Callable[[], list[int]], bench: Bench) -> float:
    """Return the tokens per second of ``make()``, which returns the tokens it generated per rollout."""
    start = time.perf_counter()
    counts = make()
    synchronize(bench.device)
    return sum(counts) / (time.perf_counter() - start)
