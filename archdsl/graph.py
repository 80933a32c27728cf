"""The model as a networkx graph: nodes are ops, edges are tensors.

The graph is a *view* derived from the IR. Every node has ``op`` (a registry kind's name, or one of
``input``, ``add``, ``scale``, ``output``), ``layer`` (the report row it belongs to: ``embedding``,
``h.3``, ``encoder.h.0``, ``lm_head``) and ``span``. Component nodes also carry their IR
:class:`~archdsl.ir.Node` (``node``), the registry kind (``kind``), the module path they lower to
(``path``, e.g. ``h.3.attn``), the ``ctx`` they were elaborated in, and ``owner``: whether this node
accounts for the module's parameters (a module applied twice, or shared between layers, owns them once).
Shape inference (:mod:`archdsl.passes`) fills ``shape`` on every node and edge.
"""

from __future__ import annotations

from dataclasses import replace

import networkx as nx

from archdsl.ir import Apply, Block, Model, Node, Ref, Scale, Stack, Stage, Sum, TExpr
from archdsl.kinds import REGISTRY, Ctx, Kind
from archdsl.kinds.embed import EMBEDDING_PROJECTION


def ctx_of(model: Model, stack: str | None = None) -> Ctx:
    """The context components of one stack were elaborated in (of its first stage, in a stack of
    stages: the embedding's width and grid; a towers model's: its head's, at the shared embedding
    width; a tower's are its own model's)."""
    if stack is None:
        stack = "encoder" if model.type in ("encoder", "towers") else "decoder"
    s = next((x for x in model.stacks if x.role == stack), None)
    pos = s.position if s is not None else None
    inside = pos is not None and REGISTRY[pos.kind].applies == "attention"
    unprojected = model.embedding is not None and model.embedding.get("project") == "none"
    latents = s is not None and s.latents is not None
    ctx = Ctx(
        d_model=model.d_model,
        vocab=model.vocab,
        stack=stack,
        position=pos if inside else None,
        lora=model.lora,
        frozen=model.frozen,
        width=embedding_width(model),
        # the input the latents read, at its table's width (Perceiver)
        memory_width=embedding_width(model) if latents and unprojected else None,
    )
    if model.embedding is None:  # a towers model: its head combines the towers' embeddings
        return ctx
    grid = REGISTRY[model.embedding.kind].out_grid(model.embedding, ctx)
    return replace(ctx, grid=grid) if grid is not None else ctx


def stage_contexts(model: Model, stack: Stack) -> list[tuple[Stage, Ctx, Ctx | None]]:
    """Each stage of a stack with the context of its layers and of its transition (None without one):
    a transition reads the stage before (the embedding, for the first). A stack without stages is one
    stage, at the embedding's width and grid."""
    ctx = ctx_of(model, stack.role)
    if not stack.stages:
        return [(Stage(0, ctx.d_model, ctx.grid), ctx, None)]
    out = []
    for st in stack.stages:
        tctx = ctx.entering(st.d_model) if st.transition is not None else None
        ctx = ctx.stage(st.d_model, st.grid)
        out.append((st, ctx, tctx))
    return out


def output_ctx(model: Model, stack: Stack | None = None) -> Ctx:
    """The context of what a stack gives (its last stage's width and grid): its final norm's, and the
    head's (of the model's last stack)."""
    stack = stack or model.stacks[-1]
    return stage_contexts(model, stack)[-1][1]


def transition_name(blk: Block) -> str:
    """The name a stage's transition takes in the stage's first block (``h.4.transition``): one the
    block's sublayers do not use."""
    names, name, k = {n for n, _ in blk.sublayers}, "transition", 1
    while name in names:
        k += 1
        name = f"transition_{k}"
    return name


def embedding_width(model: Model) -> int | None:
    """The token table's width where it differs from d_model (a projection joins the two)."""
    emb = model.embedding
    if emb is None:  # a towers model: each tower has its own
        return None
    width = emb.get("width") if any(p.name == "width" for p in REGISTRY[emb.kind].params) else None
    return None if width is None or width == model.d_model else width


def late_projection(model: Model) -> bool:
    """Whether the embedding's projection to d_model follows the stack's positions and embedding norm,
    which then act at the table's width (ALBERT), rather than the lookup (OPT)."""
    return embedding_width(model) is not None and model.embedding["project"] == "late"


def embedding_ctx(model: Model, ctx: Ctx) -> Ctx:
    """The context of a stack's positions and embedding norm: at the table's width when the
    embedding's projection comes late, or never (``project = none``: the input latents read)."""
    unprojected = model.embedding is not None and model.embedding.get("project") == "none"
    return replace(ctx, d_model=ctx.width) if (late_projection(model) or unprojected) and ctx.width else ctx


def first_self_attention(stack: Stack) -> Node | None:
    """The first self-attention sublayer of a stack (whose heads a shared positional table serves)."""
    for blk in stack.layers:
        for _, node in blk.sublayers:
            kind = REGISTRY[node.kind]
            if kind.role == "attention" and not node.get("cross", False):
                return node
    return None


def additive_position(stack: Stack) -> Node | None:
    """The stack's position table when it is added to the embeddings (not when it acts in attention)."""
    pos = stack.position
    return pos if pos is not None and REGISTRY[pos.kind].applies == "embedding" else None


class _Builder:
    def __init__(self, model: Model) -> None:
        self.model = model
        self.g = nx.DiGraph(model=model.name)
        self.owned: set[str] = set()

    def op(self, nid: str, op: str, layer: str, inputs: list[str], **attrs: object) -> str:
        self.g.add_node(nid, op=op, layer=layer, span=attrs.pop("span", None), **attrs)
        for i, src in enumerate(inputs):
            self.g.add_edge(src, nid, index=i)
        return nid

    def comp(
        self,
        nid: str,
        path: str,
        node: Node,
        ctx: Ctx,
        layer: str,
        inputs: list[str],
        owner: bool = True,
        kind: Kind | None = None,
    ) -> str:
        """A component; it owns its module's parameters the first time that module appears. ``kind``:
        a part of a component costed on its own (the embedding's late projection), else its kind."""
        owns = owner and path not in self.owned
        self.owned.add(path)
        return self.op(
            nid,
            node.kind,
            layer,
            inputs,
            node=node,
            kind=kind or REGISTRY[node.kind],
            path=path,
            ctx=ctx,
            owner=owns,
            span=node.span,
        )

    def texpr(self, t: TExpr, env: dict[str, str], prefix: str, blk: Block, ctx: Ctx, owner: bool) -> str:
        if isinstance(t, Ref):
            return env[t.name]
        if isinstance(t, Apply):
            args = [self.texpr(a, env, prefix, blk, ctx, owner) for a in t.args]
            path = f"{prefix}.{t.layer}"
            nid, k = path, 1
            while nid in self.g:
                k += 1
                nid = f"{path}#{k}"
            return self.comp(nid, path, blk.sublayer(t.layer), ctx, prefix, args, owner)
        if isinstance(t, Sum):
            args = [self.texpr(a, env, prefix, blk, ctx, owner) for a in t.terms]
            return self.op(self.fresh(prefix, "add"), "add", prefix, args, span=t.span)
        assert isinstance(t, Scale)
        arg = self.texpr(t.operand, env, prefix, blk, ctx, owner)
        return self.op(self.fresh(prefix, "scale"), "scale", prefix, [arg], factor=t.factor, span=t.span)

    def fresh(self, prefix: str, what: str) -> str:
        k = 1
        while f"{prefix}.{what}_{k}" in self.g:
            k += 1
        return f"{prefix}.{what}_{k}"

    def stack(self, stack: Stack, x: str, memory: str | None, prefix: str) -> str:
        ctx = ctx_of(self.model, stack.role)
        ectx = embedding_ctx(self.model, ctx)  # positions and embedding norm: at the table's width
        emb_layer = f"{prefix}embedding"
        if additive_position(stack) is not None:
            x = self.comp(f"{prefix}wpe", f"{prefix}wpe", stack.position, ectx, emb_layer, [x])  # type: ignore[arg-type]
        pos = stack.position
        if (
            pos is not None
            and REGISTRY[pos.kind].applies == "attention"
            and REGISTRY[pos.kind].shared_table(pos)
        ):
            pctx = replace(ctx, attention=first_self_attention(stack))
            x = self.comp(f"{prefix}pos", f"{prefix}pos", pos, pctx, emb_layer, [x])
        if stack.embedding_norm is not None:
            x = self.comp(f"{prefix}ln_emb", f"{prefix}ln_emb", stack.embedding_norm, ectx, emb_layer, [x])
        if late_projection(self.model):  # ALBERT: the table's width, then d_model
            emb, path = self.model.embedding, f"{prefix}proj_emb"
            x = self.comp(path, path, emb, ctx, emb_layer, [x], kind=EMBEDDING_PROJECTION)  # type: ignore[arg-type]
        if stack.latents is not None:  # Perceiver: the blocks run over the latents, the input is memory
            memory = x
            x = self.comp(f"{prefix}latents", f"{prefix}latents", stack.latents, ctx, emb_layer, [memory])
        stages = {st.start: (st, lctx, tctx) for st, lctx, tctx in stage_contexts(self.model, stack)}
        seen_instances: set[int] = set()
        for i, (blk, inst) in enumerate(zip(stack.layers, stack.instances, strict=True)):
            p = f"{prefix}h.{i}"
            if i in stages:  # a stage begins: its width and grid, entered through its transition
                st, ctx, tctx = stages[i]
                if st.transition is not None:
                    path = f"{p}.{transition_name(blk)}"
                    x = self.comp(path, path, st.transition, tctx, p, [x])  # type: ignore[arg-type]
            owner = inst not in seen_instances
            seen_instances.add(inst)
            env = {"x": x}
            if memory is not None:
                env["memory"] = memory
            for st_ in blk.body:
                env[st_.target] = self.texpr(st_.value, env, p, blk, ctx, owner)
            x = env[blk.output]
        if stack.final_norm is not None:
            fctx = output_ctx(self.model, stack)
            x = self.comp(f"{prefix}ln_f", f"{prefix}ln_f", stack.final_norm, fctx, f"{prefix}ln_f", [x])
        return x


def input_shapes(model: Model) -> dict[str, tuple[object, ...]]:
    """The model's inputs by name: token ids (B, T) — for an encoder-decoder, source (B, S) and target
    (B, T) — or pixels (B, C, H, W); a towers model's, one per tower, named after it."""
    if model.towers:
        return {t.name: input_shapes(t)["idx"] for t in model.towers}
    assert model.embedding is not None
    kind = REGISTRY[model.embedding.kind]
    if model.type == "encoder_decoder":
        return {
            "src": kind.input_shape(model.embedding, ctx_of(model, "encoder"), "S"),
            "idx": kind.input_shape(model.embedding, ctx_of(model, "decoder"), "T"),
        }
    return {"idx": kind.input_shape(model.embedding, ctx_of(model), "T")}


def input_vocabs(model: Model) -> dict[str, int]:
    """The vocabulary each input's token ids are drawn from, by input name (0 for images)."""
    if model.towers:
        return {t.name: t.vocab for t in model.towers}
    return dict.fromkeys(input_shapes(model), model.vocab)


def build_graph(model: Model) -> nx.DiGraph:
    b = _Builder(model)
    shapes = input_shapes(model)
    for name, shape in shapes.items():
        b.op(name, "input", "input", [], shape=shape)
    emb = model.embedding
    if model.towers:  # each tower, named by its name (`vision.h.0`), then the head that combines them
        outs = []
        for t in model.towers:
            b.model = t
            assert t.embedding is not None
            wte = b.comp(
                f"{t.name}.wte", f"{t.name}.wte", t.embedding, ctx_of(t), f"{t.name}.embedding", [t.name]
            )
            x = b.stack(t.stacks[0], wte, None, f"{t.name}.")
            outs.append(
                b.comp(f"{t.name}.head", f"{t.name}.head", t.head, output_ctx(t), f"{t.name}.head", [x])
            )
        b.model = model
        x = b.comp("head", "head", model.head, ctx_of(model), "head", outs)
        b.op("output", "output", "output", [x])
        return b.g
    assert emb is not None
    if model.type == "encoder_decoder":
        enc, dec = model.encoder, model.decoder
        assert enc is not None and dec is not None
        src = b.comp("encoder.wte", "wte", emb, ctx_of(model, "encoder"), "embedding", ["src"])
        memory = b.stack(enc, src, None, "encoder.")
        tgt = b.comp("decoder.wte", "wte", emb, ctx_of(model, "decoder"), "embedding", ["idx"])
        x = b.stack(dec, tgt, memory, "decoder.")
    else:
        x = b.comp("wte", "wte", emb, ctx_of(model), "embedding", ["idx"])
        x = b.stack(model.stacks[0], x, None, "")
    x = b.comp("lm_head", "lm_head", model.head, output_ctx(model), "lm_head", [x])
    b.op("output", "output", "output", [x])
    return b.g


def layer_order(g: nx.DiGraph) -> list[str]:
    """Layer names in the order the builder met them (inputs first, the head last)."""
    seen: dict[str, None] = {}
    for n in g.nodes:
        layer = g.nodes[n]["layer"]
        if layer not in ("input", "output"):
            seen.setdefault(layer, None)
    return list(seen)
