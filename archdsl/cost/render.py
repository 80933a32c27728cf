"""Reports as text tables and Markdown (JSON is ``Report.to_dict``; HTML is :mod:`archdsl.cost.html`)."""

from __future__ import annotations

from collections.abc import Sequence

from archdsl.cost.analysis import LayerCost, big_o_text, leading_terms
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


def layer_rows(r: Report) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [HEAD]
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


def summary_lines(r: Report) -> list[str]:
    p, f, m = r.params(), r.flops(), r.memory
    s = r.settings
    legend = ", ".join(f"{k} = {v}" for k, v in r.legend.items())
    ch = f["chinchilla"]
    fwd_poly = f["forward_poly"]
    mult, above = r.regime
    where = " and ".join(
        x for x in (f"n > {above:,}" if above else "", f"n a multiple of {mult:,}" if mult > 1 else "") if x
    )
    exact = f" (the polynomial: for {where})" if where else ""
    if not f["poly_exact"]:
        exact += "; at this length the exact count differs"
    pol = m["activations_by_policy"]
    by_policy = ", ".join(
        f"{k} {human_bytes(v['flash'])} / {human_bytes(v['materialized'])}" for k, v in pol.items()
    )
    wd = m["weights_by_dtype"]
    return [
        f"params       {p['total']:,} total ({human(p['total'])}): {p['embedding']:,} embedding, "
        f"{p['non_embedding']:,} non-embedding, {p['trainable']:,} trainable, "
        f"{p['active']:,} active per token",
        f"FLOPs        forward {human(f['forward'])} = {fwd_poly}{exact}",
        f"             mask-aware forward {human(f['forward_mask_aware'])} "
        f"{'=' if f['mask_aware_poly_exact'] else '≈'} {f['forward_mask_aware_poly']}",
        f"             backward {human(f['backward'])}, recompute {human(f['recompute'])} ({s.recompute}), "
        f"training step {human(f['train_step'])} = {f['train_step_poly']}",
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
        f"             activations {human_bytes(m['activation_bytes'])} = {m['activation_poly']} bytes "
        f"(recompute {s.recompute}, {s.attention} attention)",
        f"             activations by recompute policy (flash / materialized): {by_policy}",
        f"             KV cache {human_bytes(m['kv_cache_bytes'])} = {m['kv_cache_poly']} bytes "
        f"(batch {s.batch}, context {s.seq_len})",
        f"             peak: training {human_bytes(m['train_peak_bytes'])}, inference "
        f"{human_bytes(m['infer_peak_bytes'])}",
        f"symbols      {legend}",
    ]


def header(r: Report) -> list[str]:
    s = r.settings
    sizes = f"batch {s.batch}, seq_len {s.seq_len}"
    if r.src_len is not None:
        sizes += f", src_len {r.src_len}"
    return [
        f"{r.model}: {r.model_type}, {r.n_blocks} blocks, d_model {r.d_model}, vocab {r.vocab}",
        f"{sizes}, {s.dtype}, recompute {s.recompute}, {s.attention} attention",
    ]


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
