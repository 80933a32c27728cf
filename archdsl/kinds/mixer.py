"""What sequence mixers that are not query-key attention share: state-space models (Mamba), retention
(RetNet) and RWKV's time mixing.

They fill a block's ``attention`` slot (or its ``mixer`` slot, where the sublayer is named ``mixer``),
so they mix positions where attention would, read the padding mask and the decoding positions as
attention does, and may be mixed with attention layers in layer patterns (Jamba). They differ from
attention in three ways this base class states once:

* they are recurrences over positions, causal by construction: self-mixing only (no cross form), and
  the stack's positional scheme acting in attention (RoPE, ALiBi, relative biases) does not act in
  them (``attends`` is False; a stack with such a scheme needs some attention for it to act in);
* training runs a chunked or parallel form (no Python loop over tokens), decoding the recurrent form;
* a decoder keeps a **state** instead of a KV cache: ``kv_cache`` gives its elements per sequence,
  constant in the context length, and the module's ``setup_cache`` allocates exactly that
  (a :class:`~archdsl.kinds.attention_nn.RecurrentState`).

Padding (``mask``, (B, T), False for padding) is handled as Hugging Face's Mamba does: a padded
position's input to the recurrence is zeroed, so it leaves the state of the real tokens unchanged.
"""

from __future__ import annotations

from archdsl.kinds.base import Kind


class MixerKind(Kind):
    """Base of the recurrent sequence mixers (see the module docstring)."""

    role = "attention"
    arities = (1,)
    attends = False
    state_cache = True
