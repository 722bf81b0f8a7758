"""The error family for user mistakes: each message says what is wrong and what to do."""
from __future__ import annotations


class AZRError(Exception):
    """Base class of every error caused by user input rather than a bug."""


class ConfigError(AZRError, ValueError):
    """A setting is invalid; the message names the field."""


class DataError(AZRError, ValueError):
    """Training texts cannot be used; the message names the file when there is one."""


class CheckpointError(AZRError):
    """A checkpoint is missing, invalid, or does not fit the model."""


class HubError(AZRError):
    """A Hugging Face Hub operation failed; the message never contains the token."""


class TrainingError(AZRError):
    """Training cannot go on (e.g. the loss stopped being a finite number); a checkpoint holds the last good state."""


class AccessError(AZRError):
    """A visitor asked for what only the app's owner may do; the message says how to become the owner."""
