"""IR -> constructor tree, through the registry. :mod:`build` instantiates it, :mod:`emit` prints it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from archdsl.graph import (
    additive_position,
    ctx_of,
    embedding_ctx,
    first_self_attention,
    late_projection,
    output_ctx,
    stage_contexts,
    transition_name,
)
from archdsl.ir import Apply, Block, Model, Node, Ref, Stack, Stmt
from archdsl.kinds import REGISTRY, Ctx
from archdsl.kinds.embed import EMBEDDING_PROJECTION
from archdsl.lower.codegen import block_class, structure
from archdsl.lower.ctor import ClassRef, Ctor, Layers, Shared, ours, torch_nn
from archdsl.lower.emit import taken_names

MODEL_NN = "archdsl.lower.model_nn"


def _comp(node: Node | None, ctx: Ctx) -> Ctor:
    return torch_nn("Identity") if node is None else REGISTRY[node.kind].ctor(node, ctx)


def _optional(node: Node | None, ctx: Ctx) -> Ctor | None:
    return None if node is None else REGISTRY[node.kind].ctor(node, ctx)


def _loss_options(head: Node) -> dict[str, object]:
    """The training loss's settings from the head: label smoothing, or None for a head that gives
    features rather than logits (the pooler)."""
    if not any(p.name == "label_smoothing" for p in REGISTRY[head.kind].params):
        return {"label_smoothing": None}
    return {"label_smoothing": head["label_smoothing"]} if head["label_smoothing"] else {}


def _frozen(model: Model, ctor: Ctor) -> Ctor:
    """LoRA or adapters: the base is frozen once built (only then is the freezing code emitted)."""
    return ours(MODEL_NN, "freeze_base", model=ctor) if model.frozen else ctor


class _Classes:
    """One generated class per block topology; names made unique, also against every definition an
    emitted file copies (a block named ``rms_norm`` must not become a second ``RMSNorm``, say)."""

    def __init__(self) -> None:
        self.by_structure: dict[object, ClassRef] = {}
        self.names: set[str] = set(taken_names())

    def get(self, blk: Block) -> ClassRef:
        key = structure(blk)
        if key not in self.by_structure:
            name, k = blk.name, 1
            while name in self.names:
                k += 1
                name = f"{blk.name}{k}"
            self.names.add(name)
            self.by_structure[key] = block_class(blk, name, blk.doc or "A transformer block.")
        return self.by_structure[key]


def _block(blk: Block, ctx: Ctx, classes: _Classes, transition: tuple[Node, Ctx] | None = None) -> Ctor:
    """A block's constructor. The first block of a stage with a transition applies it first: the
    block's class gets it as one more sublayer, ``x = self.transition(x)`` (so a checkpointed block
    recomputes it too), costed in the context of the stage before."""
    subs = tuple((name, _comp(node, ctx)) for name, node in blk.sublayers)
    if transition is None:
        return Ctor(classes.get(blk), (), subs)
    name = transition_name(blk)
    entry = Block(
        ((name, transition[0]), *blk.sublayers),
        (Stmt("x", Apply(name, (Ref("x"),))), *blk.body),
        blk.inputs,
        f"Stage{blk.name}",
        (blk.doc or "A transformer block.")
        + " It begins a stage: its input passes the stage's transition first.",
    )
    return Ctor(classes.get(entry), (), ((name, _comp(transition[0], transition[1])), *subs))


def _layers(model: Model, stack: Stack, classes: _Classes) -> Layers:
    stages = {st.start: (st, ctx, tctx) for st, ctx, tctx in stage_contexts(model, stack)}
    ctors = []
    made: dict[int, Ctor] = {}  # one constructor per block object of the stage (repeated layers share it)
    for i, b in enumerate(stack.layers):
        if i in stages:
            st, ctx, tctx = stages[i]
            made = {}
            into = (st.transition, tctx) if st.transition is not None and tctx is not None else None
            ctors.append(_block(b, ctx, classes, into))
        else:
            if id(b) not in made:
                made[id(b)] = _block(b, ctx, classes)
            ctors.append(made[id(b)])
    return Layers(tuple(ctors), stack.instances, tuple(b.label for b in stack.layers), stack.repeats)


def _stack_options(model: Model, s: Stack, ctx: Ctx) -> dict[str, object]:
    """The stack's optional parts, passed only when set, so emitted code stays plain."""
    out: dict[str, object] = {}
    ectx = embedding_ctx(model, ctx)  # the embedding norm: at the table's width before a late projection
    pos = s.position
    if pos is not None and REGISTRY[pos.kind].applies == "attention" and REGISTRY[pos.kind].shared_table(pos):
        attn = first_self_attention(s)
        out["pos"] = REGISTRY[pos.kind].attention_ctor(pos, replace(ctx, attention=attn), attn)  # type: ignore[arg-type]
    if s.embedding_norm is not None:
        out["ln_emb"] = _comp(s.embedding_norm, ectx)
    if late_projection(model):  # ALBERT: the table's width -> d_model after positions and norm
        out["proj_emb"] = EMBEDDING_PROJECTION.ctor(model.embedding, ctx)
    if s.dropout:
        out["dropout"] = s.dropout
    if s.layerdrop:
        out["layerdrop"] = s.layerdrop
    if any(s.checkpoint):
        out["checkpoint"] = list(s.checkpoint)
    return out


def _towers(model: Model, classes: _Classes) -> Ctor:
    """A towers model: each tower as an embedding, its stack and its projection head, then the head
    that combines them; parameters named by tower (``vision.h.0.attn.c_attn.weight``)."""
    towers = []
    for t in model.towers:
        ctx, s = ctx_of(t), t.stacks[0]
        tower = ours(
            MODEL_NN,
            "Tower",
            wte=_comp(t.embedding, ctx),
            wpe=_optional(additive_position(s), embedding_ctx(t, ctx)),
            h=_layers(t, s, classes),
            ln_f=_comp(s.final_norm, output_ctx(t, s)),
            head=_comp(t.head, output_ctx(t)),
            **_stack_options(t, s, ctx),
        )
        towers.append((t.name, _scoped(tower, t.name)))
    head = _comp(model.head, ctx_of(model))
    return _frozen(model, Ctor(ClassRef(MODEL_NN, "Towers"), (), (("head", head), *towers)))


def _scoped(x: Any, prefix: str) -> Any:
    """A tower's constructor tree with its shared modules' keys made its own: a table one stack shares
    (T5's ``encoder.pos``) is shared within the tower, not with the other towers' stacks."""
    if isinstance(x, Shared):
        return Shared(f"{prefix}.{x.key}", _scoped(x.ctor, prefix))
    if isinstance(x, Ctor):
        args = tuple(_scoped(a, prefix) for a in x.args)
        return Ctor(x.cls, args, tuple((k, _scoped(v, prefix)) for k, v in x.kwargs))
    if isinstance(x, Layers):
        return replace(x, ctors=tuple(_scoped(c, prefix) for c in x.ctors))
    if isinstance(x, tuple):
        return tuple(_scoped(v, prefix) for v in x)
    return x


def lower(model: Model) -> Ctor:
    classes = _Classes()
    if model.towers:
        return _towers(model, classes)
    tie = REGISTRY[model.head.kind].shares_embedding(model.head)
    if model.type == "encoder_decoder":
        stacks = {}
        for s in model.stacks:
            ctx = ctx_of(model, s.role)
            stacks[s.role] = ours(
                MODEL_NN,
                "Stack",
                wpe=_optional(additive_position(s), embedding_ctx(model, ctx)),
                h=_layers(model, s, classes),
                ln_f=_comp(s.final_norm, output_ctx(model, s)),
                **_stack_options(model, s, ctx),
            )
        ctx = ctx_of(model, "decoder")
        return _frozen(
            model,
            ours(
                MODEL_NN,
                "EncoderDecoder",
                wte=_comp(model.embedding, ctx),
                encoder=stacks["encoder"],
                decoder=stacks["decoder"],
                lm_head=_comp(model.head, ctx),
                tie_weights=tie,
                **_loss_options(model.head),
            ),
        )
    ctx = ctx_of(model)
    s = model.stacks[0]
    if s.latents is not None:  # Perceiver: the blocks run over the latents, the input is their memory
        return _frozen(
            model,
            ours(
                MODEL_NN,
                "LatentTransformer",
                wte=_comp(model.embedding, ctx),
                wpe=_optional(additive_position(s), embedding_ctx(model, ctx)),
                latents=_comp(s.latents, ctx),
                h=_layers(model, s, classes),
                ln_f=_comp(s.final_norm, output_ctx(model, s)),
                lm_head=_comp(model.head, output_ctx(model)),
                reads_memory=[len(b.inputs) > 1 for b in s.layers],
                **_stack_options(model, s, ctx),
                **_loss_options(model.head),
            ),
        )
    return _frozen(
        model,
        ours(
            MODEL_NN,
            "CausalLM" if model.type == "decoder" else "Transformer",
            wte=_comp(model.embedding, ctx),
            wpe=_optional(additive_position(s), embedding_ctx(model, ctx)),
            h=_layers(model, s, classes),
            ln_f=_comp(s.final_norm, output_ctx(model, s)),
            lm_head=_comp(model.head, output_ctx(model)),
            tie_weights=tie,
            **_stack_options(model, s, ctx),
            **_loss_options(model.head),
        ),
    )
