"""Converters: every common source of agent data -> trajtune records (``trajtune convert``),
and ``split`` (``trajtune split``).

One module per source format (see ``registry.FORMATS``): alpaca, sharegpt, openai, hermes, atif,
tool_logs, interactions, traces, critiques, hh_rlhf, trl (TRL's dataset formats), cold_start (the
design's cold-start export), ours (trajtune records); ``exports`` writes records as openai /
sharegpt / alpaca-text / TRL's formats; ``convert`` is the stage driver; ``common`` holds
the input source, reject/skip accounting and the message builder every converter shares.
"""
