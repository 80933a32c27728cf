"""Reports as text tables (JSON is ``Report.to_dict``)."""

from __future__ import annotations

from archdsl.cost import CONVENTIONS, LayerCost, Report, big_o_text


def human(x: float) -> str:
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.2f} {unit}"
    return f"{x:g}"


def _what(layer: LayerCost) -> str:
    kinds = dict.fromkeys(c.kind for c in layer.components)
    return " + ".join(kinds)


def _columns(rows: list[tuple[str, ...]], right: tuple[bool, ...]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(right))]
    return [
        "  ".join(
            (cell.rjust(w) if r else cell.ljust(w)) for cell, w, r in zip(row, widths, right, strict=True)
        ).rstrip()
        for row in rows
    ]


def table(r: Report) -> str:
    rows: list[tuple[str, ...]] = [("layer", "components", "params", "forward FLOPs", "", "growth")]
    for layer in r.layers:
        f = layer.flops_forward
        rows.append(
            (layer.name, _what(layer), f"{layer.params:,}", f"{f:,}", human(f), big_o_text(layer.big_o))
        )
    total = r.flops_forward
    rows.append(("total", "", f"{r.params_total:,}", f"{total:,}", human(total), ""))
    lines = _columns(rows, (False, False, True, True, True, False))
    rule = "-" * max(len(line) for line in lines)
    emb = r.params_embedding
    out = [
        f"{r.model}: {r.model_type}, {r.n_blocks} blocks, d_model {r.d_model}, vocab {r.vocab}",
        f"batch {r.batch}, seq_len {r.seq_len}",
        "",
        lines[0],
        rule,
        *lines[1:-1],
        rule,
        lines[-1],
        "",
        f"params: {r.params_total:,} total ({human(r.params_total)}), {emb:,} embedding, "
        f"{r.params_total - emb:,} non-embedding, {r.params_trainable:,} trainable, "
        f"{r.params_active:,} active per token",
        f"params convention: {CONVENTIONS['params']}",
        f"FLOPs convention: {CONVENTIONS['flops']}",
    ]
    return "\n".join(out) + "\n"
