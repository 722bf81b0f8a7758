"""The page's plain-language help: a line under every number and choice, by the API parameter the field fills.

The tabs lay out their fields and :func:`explain` adds these lines (Gradio's ``info``), so a field's help is
written once, here, whichever tab shows it.
"""
from __future__ import annotations

from typing import Any

from azr.config import TrainConfig
from azr.config.rewards import BUILTIN_NAMES
from azr.config.schedule import REWARM_FRACTION, WSD_DECAY_FRACTION

DEFAULTS = TrainConfig()
REWARDS = ("Each function scores a continuation; the reward is their weighted sum, so its range is the functions': "
           "composite 0 to 1 (it rewards varied tokens, not sense: gibberish scores about 0.6), chrf 0 to 1 "
           "(likeness to the real continuation), ngram about 1 for text like the corpus and below 0 for random "
           "tokens, ends_sentence / contains / avoids 0 or 1.")
EXTEND = (f"Only when the checkpoint's run had finished (its LR had decayed) and the new target is larger. rewarm: "
          f"the LR climbs over {REWARM_FRACTION:.0%} of the added iterations to the schedule planned for the new "
          "target and decays again by its end; "
          "final_lr: training goes on at the low final LR. The chart below shows the plan.")

TRAIN = {
    "dataset_split": "Which part of the dataset to train on (usually train).",
    "text_column": "The dataset's column that holds the text.",
    "preset": "A model size; it fills in the sizes under Model size and the learning rate measured best for it.",
    "d_model": "Width of the vector that stands for each token (the hidden size). Wider: more capacity, slower.",
    "num_layers": "Transformer blocks stacked one on another. More: more capacity, slower.",
    "num_heads": "Attention heads per block; the width must divide evenly by it.",
    "d_ff": "Width of each block's feed-forward layer (usually 4 × the width).",
    "max_seq_len": "The longest text the model reads at once, in tokens (a token is a few characters).",
    "vocab_size": "How many distinct tokens the tokenizer may learn from your text (at least 259: the 256 bytes "
                  "and 3 markers).",
    "max_iterations": "Optimizer steps to train, one batch each. Resume later to train further.",
    "batch_size": "Text windows per step. More: steadier steps, more memory.",
    "lr": "How far each step moves the weights (the peak learning rate); each preset fills in its best. Too high "
          "diverges, too low learns slowly.",
    "lr_schedule": f"How the LR goes after the warmup: cosine (eases down to {DEFAULTS.min_lr_ratio:g} × the peak), "
                   f"constant (flat) or wsd (flat, then down over the last {WSD_DECAY_FRACTION:.0%} of the run).",
    "save_every": "Save a checkpoint every N iterations; the end of the run and Stop always save one.",
    "self_play_every": "Every N iterations the model continues prompts from your text, scores its continuations "
                       "with the rewards and learns from the better ones. 0 (the default): off, since no self-play "
                       "setting measured better than supervised training on held-out text. Turn it on to train "
                       "towards a goal a reward can check, e.g. ends_sentence(within=12,min_words=3) every iteration "
                       "(about 3x the compute, ~1 % higher validation loss); chrf every 10 costs about 1.3x. Watch "
                       "the held-out reward in the status.",
    "rewards": "Built-ins: " + ", ".join(BUILTIN_NAMES) + "; or package.module:function. " + REWARDS,
    "rl_weight": "Share of a self-play step's update that comes from the rewards, 0 to 1; the rest learns to "
                 "predict your text.",
    "seed": "Fixes the random choices (first weights, batch order, samples): the same seed and settings train the "
            "same model.",
    "precision": "Number format of the computation: fp32 (exact), bf16 or fp16 (faster on a GPU, less memory).",
    "grad_accum_steps": "Each step in N smaller pieces that add up to the same step: less memory, same result.",
    "compile": "Compile the model with torch.compile: a slow first step, then faster steps (on a GPU).",
    "time_budget_min": "Then the run pauses and saves, as Stop does; Resume goes on from there.",
}
RESUME = {
    "checkpoint": "The checkpoint to go on from: its run, iteration and target.",
    "max_iterations": "The new target: more than the checkpoint's iteration to train further (0: its own target).",
    "batch_size": "Text windows per step from here on (0: the checkpoint's).",
    "lr": "The peak learning rate from here on (0: the checkpoint's); the chart below shows the plan.",
    "load_optimizer": "Go on with the optimizer's memory of past steps, as if never stopped. Off: it starts afresh.",
    "extend_schedule": EXTEND,
}
GENERATE = {
    "checkpoint": "The checkpoint whose model writes the text.",
    "temperature": "Randomness of each next token: below 1 plainer and more repetitive, above 1 wilder.",
    "top_k": "Pick each token among the k likeliest only (0: among all).",
    "max_new_tokens": "How many tokens to add (a token is a few characters).",
    "prompt": "The text to continue (empty: the model starts from nothing).",
}
CHECKPOINTS = {"checkpoint": "The checkpoint that Delete, Download and Push act on."}
HUB = {
    "hub_private": "A repo this app creates is private (only you see it); an existing repo keeps its setting.",
    "push_checkpoints": "Upload each checkpoint to the Hub repo as it is saved (in the background).",
}


def explain(fields: dict[str, Any], texts: dict[str, str]) -> None:
    """Set the help line (``info``, read when the page is served) of each of ``fields`` (components by API
    parameter) that ``texts`` names."""
    for name, text in texts.items():
        fields[name].info = text
