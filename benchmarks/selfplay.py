"""Does self-play earn its compute? ``python -m benchmarks.selfplay --protocol tuning|reporting [--quick]``.

Two kinds of protocol that share nothing they measure on (issue 26):

* ``tuning`` chooses settings: seeds 100 and 101, the embedded corpus (tiny Shakespeare), prompts from the first
  half of its validation windows. Its arms are the candidates (``TUNING_ARMS``).
* ``reporting`` is run once, after choosing: seeds 0, 1 and 2, prompts from the second half of the embedded
  corpus's validation windows, and a corpus never tuned on (tests/fixtures/licenses/licenses.txt, all of its
  validation windows). Its arms are fixed in ``REPORTING_ARMS``.
* ``tuning3`` and ``reporting3`` are the same with other seeds (100-103; 3, 4 and 5, never run before): the
  verifiable arm's third round (BENCHMARKS.md); ``tuning4`` and ``reporting4`` its fourth (100-105; 6-11);
  ``reporting5`` its fifth (seeds 12-17, every held-out prompt of the half, 8 samples each); ``tuning6`` and
  ``reporting6`` its sixth (100-105; 18-23; both at round 5's sizes); ``tuning7`` and ``reporting7`` its seventh
  (100-105; 24-29).

Per seed and corpus, a supervised warm-up run is resumed for ``arm_iterations`` more once per arm; every arm sees
the same LM batches (the data position is in the checkpoint). Arms run in a rotated order per seed so that the
machine's load hits each alike; the compute ratio is each arm's seconds over the supervised arm's of the same seed.
See benchmarks/selfplay_measures.py for the metrics; results go to ``benchmarks/selfplay_<protocol>.json``.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from azr import AZRTrainer, build_model, default_corpus, preset, train_tokenizer
from azr.data.corpus import TokenWindows

from .common import learning_pool
from .selfplay_measures import beats_supervised, markdown, measure, quality_held, real_rate, summarise

HERE = Path(__file__).resolve().parent
LICENSES = HERE.parent / "tests" / "fixtures" / "licenses" / "licenses.txt"
SIZES = {"full": dict(warmup_iterations=100, arm_iterations=100, prompts=64, samples_per_prompt=2),
         # Round 5: every held-out prompt of the protocol's half and 8 samples each, so that the verifiable rate's
         # binomial noise (about 0.038 at 64 x 2 samples, most of the supervised sd of rounds 3-4) is about 0.013.
         "precise": dict(warmup_iterations=100, arm_iterations=100, prompts=None, samples_per_prompt=8),
         "quick": dict(warmup_iterations=6, arm_iterations=2, prompts=4, samples_per_prompt=2)}
TUNING_PRECISE = dict(seeds=(100, 101, 102, 103, 104, 105), corpora=("embedded",), half=0, role="tuning",
                      sizes="precise")  # rounds 6 and 7 tuned alike
MIN_PROMPTS = 64  # a corpus with fewer than twice this many validation windows is not halved (licenses: 42)
PROTOCOLS = {"tuning": dict(seeds=(100, 101), corpora=("embedded",), half=0, role="tuning"),
             "reporting": dict(seeds=(0, 1, 2), corpora=("embedded", "licenses"), half=1, role="reporting"),
             "tuning3": dict(seeds=(100, 101, 102, 103), corpora=("embedded",), half=0, role="tuning"),
             "reporting3": dict(seeds=(3, 4, 5), corpora=("embedded", "licenses"), half=1, role="reporting"),
             "tuning4": dict(seeds=(100, 101, 102, 103, 104, 105), corpora=("embedded",), half=0, role="tuning"),
             "reporting4": dict(seeds=(6, 7, 8, 9, 10, 11), corpora=("embedded", "licenses"), half=1,
                                role="reporting"),
             # Round 5, planned after round 4's reporting results were seen: round 4's reported arm again, unchanged
             # (no new tuning), measured more precisely ("precise" sizes) on fresh seeds 12-17. Same bar, read the
             # same way; reported once.
             "reporting5": dict(seeds=(12, 13, 14, 15, 16, 17), corpora=("embedded", "licenses"), half=1,
                                role="reporting", sizes="precise"),
             # Round 6 (candidates and rule in TUNING_ARMS), planned after round 5's results: tuned on the embedded
             # corpus's tuning seeds, then reported once on fresh seeds 18-23; both at the precise sizes.
             "tuning6": TUNING_PRECISE,
             "reporting6": dict(seeds=(18, 19, 20, 21, 22, 23), corpora=("embedded", "licenses"), half=1,
                                role="reporting", sizes="precise"),
             # Round 7 (candidates in TUNING_ARMS): round 6's protocol again, with fresh reporting seeds 24-29.
             "tuning7": TUNING_PRECISE,
             "reporting7": dict(seeds=(24, 25, 26, 27, 28, 29), corpora=("embedded", "licenses"), half=1,
                                role="reporting", sizes="precise")}
BASE = dict(batch_size=8, lr=2e-3, warmup=20, lr_schedule="constant", save_every=10_000, status_every=1_000,
            val_every=0)
VERIFIABLE = "ends_sentence(within=12,min_words=3)"
# The defaults before issue 26, spelled out so that the arm keeps meaning the same after the defaults change.
OLD_DEFAULTS = dict(self_play_every=10, rewards="composite", rl_weight=0.1, self_play_batch=8, num_generations=4,
                    scale_rewards="group", loss_type="grpo", rl_norm_rescale=True, beta=0.04, ref_sync_every=100)
CHRF = dict(OLD_DEFAULTS, rewards="chrf")  # the same compute as the defaults, the grounded reward
VERIFIABLE_ARM = dict(OLD_DEFAULTS, rewards=VERIFIABLE, self_play_every=1, self_play_batch=16, num_generations=8,
                      gen_max_new_tokens=12)


def grounded(chrf_weight: int, share: float) -> dict[str, Any]:
    """The verifiable arm with the grounded chrF term added at ``chrf_weight``, at RL share ``share`` (rounds 4-7)."""
    return dict(VERIFIABLE_ARM, rewards=f"{VERIFIABLE},chrf*{chrf_weight}", rl_weight=share, scale_rewards="none",
                loss_type="dr_grpo")


TUNING_ARMS = {
    "defaults": OLD_DEFAULTS,
    "chrf": CHRF,
    "chrf_w0.3": dict(CHRF, rl_weight=0.3),
    "chrf_w0.3_batch_dr": dict(CHRF, rl_weight=0.3, scale_rewards="batch", loss_type="dr_grpo"),
    "chrf_w0.3_g8": dict(CHRF, rl_weight=0.3, num_generations=8),
    "verifiable_w0.3": dict(VERIFIABLE_ARM, rl_weight=0.3),
    "verifiable_w0.3_none_dr": dict(VERIFIABLE_ARM, rl_weight=0.3, scale_rewards="none", loss_type="dr_grpo"),
    # Second round, verifiable arm only (run with --arms): lower RL shares of the chosen variant. Rule fixed before
    # the run: of the candidates whose reward rose and whose validation loss, greedy and sampled chrF, seq-rep-4 and
    # distinct-2 are each no worse than supervised-only by more than 1 supervised sd, the largest reward rise.
    "verifiable_w0.1_none_dr": dict(VERIFIABLE_ARM, rl_weight=0.1, scale_rewards="none", loss_type="dr_grpo"),
    "verifiable_w0.15_none_dr": dict(VERIFIABLE_ARM, rl_weight=0.15, scale_rewards="none", loss_type="dr_grpo"),
    # Third round (protocol tuning3, then reporting3 on fresh seeds 3-5), planned after rounds 1-2's reporting
    # results were seen. Candidates: verifiable_w0.15_none_dr above, inside the window that a power law through
    # rounds 1-2's reporting points (share 0.1 and 0.3) puts between the reward's 2 sd and the loss's 1 sd
    # (about 0.13-0.17 on the embedded corpus); and the same average RL share without the norm rescaling, whose RL
    # step then follows each round's reward signal instead of always taking its share (the issue's "keep the
    # rescaling only if it measures better"): |g_rl| / |g_lm| measured 0.67 (median 0.65, 0.41-0.93) over 40
    # rounds at share 0.3 on tuning seed 100 (no outcome measured), so rl_weight 0.2 unscaled gives RL/LM about
    # 0.2 * 0.67 / 0.8 = 0.17, as 0.15 scaled gives 0.15 / 0.85 = 0.18. No stronger-KL arm: within an arm the
    # reference is the warm-up checkpoint (about 0.5 nats worse on validation loss), so a larger beta pulls towards it,
    # and a re-synced reference damps the last few iterations' supervised steps as much as the RL ones. Same rule
    # as round 2 (of the candidates whose reward rose and whose five text measures are each within 1 supervised
    # sd, the largest reward rise) and the same bar (on both reporting corpora: reward rise > 2 supervised sd,
    # each text measure no worse than supervised-only by more than 1 supervised sd).
    "verifiable_w0.2_unscaled_none_dr": dict(VERIFIABLE_ARM, rl_weight=0.2, rl_norm_rescale=False,
                                             scale_rewards="none", loss_type="dr_grpo"),
    # Fourth round (protocol tuning4, then reporting4 on fresh seeds 6-11; six seeds each, so that the means and the
    # supervised sd the bar is counted in rest on more runs), planned after round 3's reporting results were seen.
    # Round 3's arm raised the reward on every seed but made greedy text more repetitive (seq-rep-4 +3.5 sd on
    # Shakespeare) and sampled chrF lower: the reward pays for ending a sentence within 12 tokens however the
    # sentence reads. The candidates add the grounded chrF term to the verifiable reward, so that of two samples
    # that both end a sentence the one nearer the real continuation gets the larger advantage. Its weight 4: in a
    # group, chrF differs by a few hundredths and the sentence end by 0 or 1, so at weight 1 the term would barely
    # move an advantage. Shares 0.15 (round 3's) and 0.3 (round 1's, which cleared the reward on both corpora but
    # cost validation loss). Same rule and bar as rounds 2 and 3; the reward the bar reads is still the
    # verifiable one alone (``VERIFIABLE`` on held-out prompts), not the arm's mixed training reward. If neither
    # candidate passes the rule on tuning4, nothing is reported in this round.
    "verifiable_chrf4_w0.15_none_dr": grounded(4, 0.15),
    "verifiable_chrf4_w0.3_none_dr": grounded(4, 0.3),
    # Sixth round (protocol tuning6, then reporting6 on fresh seeds 18-23, both at the precise sizes), planned after
    # round 5's results were seen. Round 5 measured precisely: the reward cleared 2 sd on both corpora (2.3, 3.1) and
    # a text measure failed (greedy distinct-2 on licenses, -1.55 sd; on Shakespeare -0.80 sd), so text, not reward,
    # binds. Candidates: the grounded term at twice the weight (chrF 8: of two samples that both end a sentence,
    # the one nearer the real words gets a larger share of the advantage), and round 4's reward at a smaller share
    # (0.1). Rule, fixed before the run: of the candidates whose verifiable reward rose by more than 2 supervised sd
    # on tuning6 and whose five text measures are each within 1 supervised sd, the one whose largest text-measure
    # cost (in supervised sd) is smallest; none: nothing is reported. The bar is unchanged.
    "verifiable_chrf8_w0.15_none_dr": grounded(8, 0.15),
    "verifiable_chrf4_w0.1_none_dr": grounded(4, 0.1),
    # Seventh round (protocol tuning7, then reporting7 on fresh seeds 24-29), planned after round 6's tuning results
    # were seen: neither candidate passed (reward +1.41 and +0.80 sd), so nothing was reported. chrF 8 at share 0.15
    # kept every text measure within 0.5 sd, so the candidates spend that margin on a larger share, and one weighs
    # the grounded term more again: chrF 8 at shares 0.2 and 0.25, chrF 12 at share 0.25. Round 6's rule and the bar,
    # unchanged.
    "verifiable_chrf8_w0.2_none_dr": grounded(8, 0.2),
    "verifiable_chrf8_w0.25_none_dr": grounded(8, 0.25),
    "verifiable_chrf12_w0.25_none_dr": grounded(12, 0.25),
}
# Chosen on the tuning protocol (BENCHMARKS.md, "Self-play evaluation (issue 26)"): of the chrf arms at the
# defaults' compute, the best greedy reference-match and seq-rep-4; of the verifiable arms, the larger reward rise.
REPORTING_ARMS = {"defaults": OLD_DEFAULTS, "chrf": TUNING_ARMS["chrf_w0.3_batch_dr"],
                  "verifiable": TUNING_ARMS["verifiable_w0.3_none_dr"],
                  # Chosen by the second round's rule (above), after the first reporting run's loss cost.
                  "verifiable_w0.1": TUNING_ARMS["verifiable_w0.1_none_dr"],
                  # Chosen by the same rule on tuning3 (the unscaled candidate's seq-rep-4 was 1.2 sd worse);
                  # reported once on reporting3.
                  "verifiable_w0.15": TUNING_ARMS["verifiable_w0.15_none_dr"],
                  # Chosen by the same rule on tuning4, the only candidate that passed it (share 0.3 lost validation
                  # loss, seq-rep-4 and distinct-2); reported once on reporting4.
                  "verifiable_chrf4_w0.15": TUNING_ARMS["verifiable_chrf4_w0.15_none_dr"],
                  # Chosen by round 6's rule on tuning7: of the two candidates that passed it (reward +2.02 and +2.75
                  # sd, largest text cost 0.79 and 0.99 sd; chrF 12 lost distinct-2), the smaller text cost.
                  "verifiable_chrf8_w0.2": TUNING_ARMS["verifiable_chrf8_w0.2_none_dr"]}


def protocol_arms(protocol: str) -> dict[str, dict[str, Any]]:
    """The arms a protocol may run: the candidates when it chooses settings, the fixed arms when it reports."""
    return TUNING_ARMS if PROTOCOLS[protocol]["role"] == "tuning" else REPORTING_ARMS


def corpus_texts(name: str) -> list[str]:
    return default_corpus() if name == "embedded" else [LICENSES.read_text(encoding="utf-8")]


def held_out(windows: TokenWindows, half: int, prompts: int | None):
    """The first ``prompts`` (None: all) of the protocol's half of the validation windows (a corpus with fewer than
    2 x MIN_PROMPTS windows, as licenses, is not halved: all of them)."""
    middle = len(windows.val) // 2
    part = windows.val[: len(windows.val)] if len(windows.val) < 2 * MIN_PROMPTS else \
        windows.val[middle * half: middle * (half + 1)]
    return part[:prompts] if prompts else part


def one_run(corpus: str, seed: int, protocol: str, sizes: dict[str, Any], arms: dict[str, dict[str, Any]],
            scratch: Path) -> dict[str, Any]:
    """Warm up, then run every arm from the warm-up checkpoint; return their measures and seconds."""
    texts = corpus_texts(corpus)
    tokenizer = train_tokenizer(texts, preset("tiny").vocab_size)
    model_config = preset("tiny", vocab_size=len(tokenizer))
    windows = TokenWindows.from_texts(texts, tokenizer, model_config.max_seq_len)
    held = held_out(windows, PROTOCOLS[protocol]["half"], sizes["prompts"])
    warm = AZRTrainer(build_model(model_config, seed=seed), tokenizer, device="cpu")
    run_dir = scratch / f"{corpus}-{seed}"
    list(warm.train(texts, sizes["warmup_iterations"], run_dir / "warm", seed=seed, self_play_every=0, **BASE))
    start = warm.last_status.checkpoint
    samples = sizes["samples_per_prompt"]
    result: dict[str, Any] = {"warmup": measure(warm.model, tokenizer, held, VERIFIABLE, seed, samples),
                              "real_verifiable_rate": real_rate(tokenizer, held, VERIFIABLE)}
    names = ["supervised", *arms]
    shift = seed % len(names)
    for arm in names[shift:] + names[:shift]:
        began = time.monotonic()
        trainer = AZRTrainer.from_checkpoint(start, device="cpu")
        list(trainer.train(max_iterations=sizes["warmup_iterations"] + sizes["arm_iterations"],
                           checkpoint_dir=run_dir / arm, resume_from=start, **arms.get(arm, dict(self_play_every=0))))
        seconds = time.monotonic() - began
        result[arm] = {**measure(trainer.model, tokenizer, held, VERIFIABLE, seed, samples), "seconds": seconds}
    return result


def chosen_arms(arms: dict[str, dict[str, Any]], names: str | None, parser: argparse.ArgumentParser):
    """The arms named in ``--arms`` (all when not given), in the protocol's order."""
    if names is None:
        return arms
    wanted = {name.strip() for name in names.split(",")} - {"supervised"}
    if unknown := sorted(wanted - set(arms)):
        parser.error(f"unknown arm(s) {', '.join(unknown)}: choose from supervised, {', '.join(arms)}")
    return {name: settings for name, settings in arms.items() if name in wanted}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.selfplay", description=__doc__.split("\n")[0])
    parser.add_argument("--protocol", choices=tuple(PROTOCOLS), default="reporting")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one seed: a smoke test of the benchmark")
    parser.add_argument("--workers", type=int, default=2, help="runs at once, one process and thread each")
    parser.add_argument("--output", type=Path, help="default: benchmarks/selfplay_<protocol>.json")
    parser.add_argument("--arms", help="comma-separated arms of the protocol to run (supervised always runs); "
                                       "default: all of them")
    args = parser.parse_args(argv)
    protocol = PROTOCOLS[args.protocol]
    sizes = SIZES["quick" if args.quick else protocol.get("sizes", "full")]
    seeds = protocol["seeds"][:1] if args.quick else protocol["seeds"]
    arms = chosen_arms(protocol_arms(args.protocol), args.arms, parser)
    if args.quick:
        arms = {name: dict(settings, self_play_every=1) for name, settings in list(arms.items())[:2]}
    with tempfile.TemporaryDirectory(prefix="azr-selfplay-") as scratch, learning_pool(args.workers) as pool:
        futures = {(corpus, seed): pool.submit(one_run, corpus, seed, args.protocol, sizes, arms, Path(scratch))
                   for corpus in protocol["corpora"] for seed in seeds}
        runs = {key: future.result() for key, future in futures.items()}
    results: dict[str, Any] = {"protocol": args.protocol, "seeds": list(seeds), "sizes": sizes, "base": BASE,
                               "verifiable": VERIFIABLE, "arms": arms, "corpora": {}}
    for corpus in protocol["corpora"]:
        per_seed = {seed: runs[corpus, seed] for seed in seeds}
        table = summarise(per_seed, ["supervised", *arms])
        results["corpora"][corpus] = {"runs": per_seed, "table": table, "markdown": markdown(table, ["supervised",
                                                                                                      *arms])}
        results["corpora"][corpus]["quality_held_1sd"] = {arm: quality_held(table, arm) for arm in arms}
        if "defaults" in arms:
            results["corpora"][corpus]["defaults_beat_supervised"] = beats_supervised(table, "defaults")
        print(f"## {corpus}\n\n{results['corpora'][corpus]['markdown']}", flush=True)
    output = args.output or HERE / f"selfplay_{args.protocol}.json"
    output.write_text(json.dumps(results, indent=1) + "\n")
    return results


if __name__ == "__main__":
    main()
