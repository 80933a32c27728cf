"""Lowering: IR -> constructor tree (:mod:`lowering`) -> nn.Module (:mod:`build`) or source (:mod:`emit`)."""
