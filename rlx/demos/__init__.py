"""Runnable experiments from the notes: `rlx demo advantage` (the penalty shootout) and
`rlx demo multimodal` (the two passages), with the small gymnasium envs they use."""
