"""Reports as text tables and Markdown (JSON is ``Report.to_dict``; HTML is :mod:`archdsl.cost.html`)."""

from __future__ import annotations

from collections.abc import Sequence

from archdsl.cost.analysis import LayerCost, big_o_text, leading_terms
from archdsl.cost.poly import Poly
from archdsl.cost.regime import Regime, equation, piecewise_equation
from archdsl.cost.report import CONVENTIONS, Report


def human(x: float) -> str:
    """FLOPs and counts with decimal prefixes: ``291.65 G``."""
    for unit, scale in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.2f} {unit}"
    return f"{x:g}"


def human_bytes(x: float) -> str:
    """Bytes with binary prefixes: ``1.50 GiB``."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(x) >= scale:
            return f"{x / scale:.2f} {unit}"
    return f"{int(x)} B"


def _what(layer: LayerCost) -> str:
    return " + ".join(dict.fromkeys(c.kind for c in layer.components))


def columns(rows: list[tuple[str, ...]], right: tuple[bool, ...]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(right))]
    return [
        "  ".join(
            (cell.rjust(w) if r else cell.ljust(w)) for cell, w, r in zip(row, widths, right, strict=True)
        ).rstrip()
        for row in rows
    ]


def markdown_table(rows: list[tuple[str, ...]], right: tuple[bool, ...]) -> list[str]:
    def cell(s: str) -> str:
        return s.replace("|", "\\|")

    out = ["| " + " | ".join(cell(c) for c in rows[0]) + " |"]
    out.append("|" + "|".join("---:" if r else "---" for r in right) + "|")
    out += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows[1:]]
    return out


HEAD = (
    "layer",
    "components",
    "params",
    "forward FLOPs",
    "",
    "mask-aware",
    "activations",
    "KV cache",
    "class",
    "growth",
)
RIGHT = (False, False, True, True, True, True, True, True, False, False)


def cache_label(r: Report) -> str:
    """What a decoder keeps: a KV cache, a recurrent state (Mamba, RWKV, retention, linear attention),
    or both (a hybrid)."""
    from archdsl.kinds import REGISTRY

    kinds = {c.kind for layer in r.layers for c in layer.components if c.kv_cache_elements}
    state = {k for k in kinds if REGISTRY[k].state_cache or REGISTRY[k].recurrent}
    if state and state == kinds:
        return "decoding state"
    return "KV cache + state" if state else "KV cache"


def layer_rows(r: Report) -> list[tuple[str, ...]]:
    label = cache_label(r).replace("decoding state", "state")
    rows: list[tuple[str, ...]] = [tuple(label if h == "KV cache" else h for h in HEAD)]
    for layer in r.layers:
        f = layer.flops_forward
        rows.append(
            (
                layer.name,
                _what(layer),
                f"{layer.params:,}",
                f"{f:,}",
                human(f),
                human(float(layer.total("flops_mask_aware"))),
                human_bytes(layer.activation_bytes),
                human_bytes(layer.kv_cache_bytes) if layer.kv_cache_bytes else "-",
                big_o_text(leading_terms(layer.big_o)),
                big_o_text(layer.big_o),
            )
        )
    m = r.memory
    total = r.flops_forward
    rows.append(
        (
            "total",
            "",
            f"{r.params_total:,}",
            f"{total:,}",
            human(total),
            human(float(r.total("flops_mask_aware"))),
            human_bytes(m["activation_bytes"]),
            human_bytes(m["kv_cache_bytes"]) if m["kv_cache_bytes"] else "-",
            "",
            "",
        )
    )
    return rows


def equation_of(r: Report, figure: str, exact: bool, poly: Poly, regime: Regime, unit: str = "") -> str:
    """``figure = poly`` where the polynomial gives the figure at the report's sizes, else the figure
    and the polynomial with its regime (:func:`archdsl.cost.regime.equation`)."""
    return equation(figure, exact, poly, regime, unit, r.lengths, regime.holds(r.sizes()))


def kv_equation(r: Report, figure: str) -> str:
    """The KV cache beside its piecewise form where known, else beside its polynomial and regime."""
    m = r.memory
    if r.kv_pieces is not None:
        return piecewise_equation(figure, r.kv_pieces, r.sizes(), " bytes")
    return equation_of(r, figure, m["kv_cache_poly_exact"], m["kv_cache_poly"], r.kv_regime, " bytes")


def activation_equation(r: Report) -> str:
    """Saved activations beside the polynomial of this batch (a batch of one keeps views where larger
    batches copy, so it has its own), and the other batch's where that differs."""
    m, s = r.memory, r.settings
    how = f"recompute {s.recompute}, {s.attention} attention"
    figure = f"activations {human_bytes(m['activation_bytes'])} ({how})"
    here = r.activation_poly_here
    unit = " bytes" if here is m["activation_poly"] else " bytes at b = 1"
    text = equation_of(r, figure, here(**r.sizes()) == m["activation_bytes"], here, r.flops_regime, unit)
    if not r.batch_1_agrees:
        one, many = m["activation_poly_batch_1"], m["activation_poly"]
        text += f"; for b ≥ 2: {many} bytes" if s.batch == 1 else f"; at b = 1: {one} bytes"
    return text


def summary_lines(r: Report) -> list[str]:
    p, f, m = r.params(), r.flops(), r.memory
    s = r.settings
    legend = ", ".join(f"{k} = {v}" for k, v in r.legend.items())
    ch = f["chinchilla"]
    fr = r.flops_regime
    pol = m["activations_by_policy"]
    by_policy = ", ".join(
        f"{k} {human_bytes(v['flash'])} / {human_bytes(v['materialized'])}" for k, v in pol.items()
    )
    wd = m["weights_by_dtype"]
    forward = equation_of(r, f"forward {human(f['forward'])}", f["poly_exact"], f["forward_poly"], fr)
    mask = equation_of(
        r,
        f"mask-aware forward {human(f['forward_mask_aware'])}",
        f["mask_aware_poly_exact"],
        f["forward_mask_aware_poly"],
        fr,
    )
    train = equation_of(
        r, f"training step {human(f['train_step'])}", f["train_step_poly_exact"], f["train_step_poly"], fr
    )
    act = activation_equation(r)
    label = cache_label(r)
    kv = kv_equation(r, f"{label} {human_bytes(m['kv_cache_bytes'])} (batch {s.batch}, context {s.seq_len})")
    if m["kv_cache_mha_bytes"] != m["kv_cache_bytes"]:  # grouped heads, windows, states, latents
        kv += f"; multi-head attention with the same heads would cache {human_bytes(m['kv_cache_mha_bytes'])}"
        if m["kv_cache_bytes"]:
            ratio = m["kv_cache_mha_ratio"]
            kv += f" ({ratio:.1%} of it, {1 / ratio:.1f}x smaller)" if ratio < 1 else f" ({ratio:.1%} of it)"
    return [
        f"params       {p['total']:,} total ({human(p['total'])}): {p['embedding']:,} embedding, "
        f"{p['non_embedding']:,} non-embedding, {p['trainable']:,} trainable, "
        f"{p['active']:,} active per token",
        f"FLOPs        {forward}",
        f"             {mask}",
        f"             backward {human(f['backward'])}, recompute {human(f['recompute'])} ({s.recompute}), "
        f"{train}",
        f"             per token: forward {human(f['per_token']['forward'])}, training step "
        f"{human(f['per_token']['train_step'])} ({f['tokens_per_step']:,} tokens a step)",
        f"             compute-optimal (Hoffmann et al. 2022, 20 tokens per parameter): "
        f"{human(ch['tokens'])} tokens, {ch['train_flops']:.3g} training FLOPs at this length "
        f"(6·N·D: {ch['train_flops_6nd']:.3g})",
        f"memory       weights {human_bytes(m['weights_bytes'])} in {s.dtype} "
        f"(fp32 {human_bytes(wd['fp32'])}, bf16 {human_bytes(wd['bf16'])}, int8 {human_bytes(wd['int8'])}, "
        f"int4 {human_bytes(wd['int4'])})",
        f"             gradients {human_bytes(m['grads_bytes'])}, "
        f"AdamW states {human_bytes(m['optimizer_bytes'])}",
        f"             {act}",
        f"             activations by recompute policy (flash / materialized): {by_policy}",
        f"             {kv}",
        f"             peak: training {human_bytes(m['train_peak_bytes'])}, inference "
        f"{human_bytes(m['infer_peak_bytes'])}",
        f"symbols      {legend}",
    ]


def header(r: Report) -> list[str]:
    s = r.settings
    sizes = f"batch {s.batch}, seq_len {s.seq_len}"
    if r.src_len is not None:
        sizes += f", src_len {r.src_len}"
    if r.towers:
        towers = " and ".join(
            f"{t['name']} (d_model {t['d_model']}, "
            + (f"{t['length']} positions)" if t["length"] else f"vocab {t['vocab']})")
            for t in r.towers
        )
        first = f"{r.model}: towers {towers}, {r.n_blocks} blocks, embedding width {r.d_model}"
    else:
        first = f"{r.model}: {r.model_type}, {r.n_blocks} blocks, d_model {r.d_model}, vocab {r.vocab}"
    return [first, f"{sizes}, {s.dtype}, recompute {s.recompute}, {s.attention} attention"]


def convention_lines() -> list[str]:
    names = {
        "params": "params",
        "flops": "FLOPs (dense)",
        "flops_mask_aware": "FLOPs (mask-aware)",
        "backward": "backward",
        "recompute": "recompute",
        "memory": "memory",
        "peaks": "peaks",
    }
    return [f"{names[k]} convention: {v}" for k, v in CONVENTIONS.items()]


def table(r: Report) -> str:
    lines = columns(layer_rows(r), RIGHT)
    rule = "-" * max(len(line) for line in lines)
    out = [*header(r), "", lines[0], rule, *lines[1:-1], rule, lines[-1], "", *summary_lines(r), ""]
    out += convention_lines()
    return "\n".join(out) + "\n"


def markdown(r: Report) -> str:
    out = [f"## {r.model}", "", *(f"{line}  " for line in header(r)), ""]
    out += markdown_table(layer_rows(r), RIGHT)
    out += ["", "```", *summary_lines(r), "```", ""]
    out += [f"- {line}" for line in convention_lines()]
    return "\n".join(out) + "\n"


def sweep_rows(reports: Sequence[Report]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [
        (
            "seq_len",
            "forward FLOPs",
            "mask-aware",
            "train step",
            "activations",
            "KV cache",
            "train peak",
            "infer peak",
        )
    ]
    for r in reports:
        f, m = r.flops(), r.memory
        rows.append(
            (
                f"{r.seq_len:,}",
                human(f["forward"]),
                human(f["forward_mask_aware"]),
                human(f["train_step"]),
                human_bytes(m["activation_bytes"]),
                human_bytes(m["kv_cache_bytes"]),
                human_bytes(m["train_peak_bytes"]),
                human_bytes(m["infer_peak_bytes"]),
            )
        )
    return rows


def sweep_table(reports: Sequence[Report], fmt: str = "table") -> str:
    rows = sweep_rows(reports)
    right = (True,) * len(rows[0])
    r = reports[0]
    growth = big_o_text(leading_terms(tuple(dict.fromkeys(t for layer in r.layers for t in layer.big_o))))
    title = f"{r.model}: by sequence length (batch {r.batch}, {r.settings.dtype}, growth {growth})"
    if fmt == "md":
        return "\n".join([f"## {title}", "", *markdown_table(rows, right)]) + "\n"
    return "\n".join([title, *columns(rows, right)]) + "\n"
