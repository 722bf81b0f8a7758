"""Benchmarks of AZR Trainer against a bare PyTorch loop, transformers.Trainer and the disk (``python -m benchmarks``).

Every comparison runs side by side in one process run, its contenders alternated (A B A B ...) over several
repeats after a warm-up; medians and the ratio of each pair go to ``benchmarks/results.json`` and a table.
"""
from __future__ import annotations

# Every metric the run reports, and whether it compares two contenders (its entry then carries a ratio). A metric
# measured at several sizes names each entry ``metric@size``.
METRICS: dict[str, bool] = {
    "train_tokens_per_s": True,
    "train_mfu": True,
    "train_vs_hf_trainer": True,
    "azr_step": True,
    "selfplay_generation": True,
    "checkpoint_save_s": True,
    "checkpoint_load_s": True,
    "checkpoint_size_mb": True,
    "save_vs_hf_trainer": True,
    "save_vs_hf_trainer_larger": True,
    "load_vs_hf_trainer": True,
    "load_vs_hf_trainer_larger": True,
    "history_state_kb": False,
    "history_save_ratio": True,
    "list_checkpoints_s": False,
    "list_process_s": True,
    "stop_latency_s": True,
    "push_overhead": True,
    "import_s": False,
    "cli_help_s": True,
    "cli_subcommand_help_s": True,
    "cli_usage_error_s": True,
    "cli_list_s": True,
    "resume_to_first_step_s": False,
    "peak_rss_mb": True,
    "peak_rss_vs_hf_trainer": True,
    "rss_after_run": True,
    "lora_checkpoint_size": True,
    "async_save_throughput": True,
    "async_save_throughput_larger": True,
    "async_save_blocking": True,
    "async_save_blocking_larger": True,
    "data_tokenise_mb_per_s": True,
    "data_peak_rss_mb": True,
    "data_resume_s": True,
    "dcp_save_blocking": True,
    "dcp_save_blocking_larger": True,
    "dcp_save_throughput": True,
    "dcp_save_throughput_larger": True,
    "dcp_save_rss_mb": True,
    "dcp_save_rss_mb_larger": True,
}
