"""Evaluation outputs: Markdown (paper layout), CSV, JSON and PNG plots, all written atomically.

Every file names the mode ('official' or 'clean') in its name and its content, so numbers from
the two protocols can never be confused.
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Sequence

from ..atomic import write_bytes
from .runner import H36M_ACTION_GROUPS, METRIC_NAMES, P2_PREFIX, EvalResult

# The paper's column labels for the 15 Human3.6M action groups.
SHORT_NAMES = dict(zip(H36M_ACTION_GROUPS, ("Dir.", "Disc.", "Eat", "Greet", "Phone", "Photo", "Pose", "Purch.",
                                            "Sit", "SitD.", "Smoke", "Wait", "WalkD.", "Walk", "WalkT.")))
PROTOCOLS = ((1, "", "Protocol #1: MPJPE (mm)"), (2, P2_PREFIX, "Protocol #2: P-MPJPE (mm)"))


def _fmt(x: float) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.1f}"


# --- Markdown ------------------------------------------------------------------------------------

def _metric_table(result: EvalResult, prefix: str, subject: str | None) -> list[str]:
    """Rows = metric at step k, columns = action groups + Avg (the paper's layout)."""
    table, summary = result.table(subject), result.summary(subject)
    names = [m for m in result.metrics if m.startswith(prefix) and (prefix or not m.startswith(P2_PREFIX))]
    if not names:
        return []
    groups = list(table[names[0]])
    lines = ["| Metric | " + " | ".join(SHORT_NAMES.get(g, g) for g in groups) + " | Avg |",
             "|---" * (len(groups) + 2) + "|"]
    H = result.settings["num_hypotheses"]
    for m in names:
        for k in range(result.settings["num_steps"]):
            cells = [_fmt(table[m][g][k]) for g in groups] + [f"**{_fmt(summary[m][k])}**"]
            lines.append(f"| {m.removeprefix(prefix)} (H={H}, k={k + 1}) | " + " | ".join(cells) + " |")
    return lines


def _pck_tables(pck: dict, K: int) -> list[str]:
    lines = [f"## MPI-INF-3DHP PCK@150mm / AUC / MPJPE (step k={K})", "",
             "Sequence rows are per test sequence; **Mean** is the unweighted mean over the sequences "
             "(D3DP README); **All** pools every valid frame (frame-weighted). PCK/AUC over 14 joints, "
             "MPJPE over all 17 joints (pelvis error 0).", ""]
    for metric, t in pck.items():
        lines += [f"### {metric}", "", "| Rows | PCK | AUC | MPJPE | frames |", "|---|---|---|---|---|"]
        rows = [*t["sequences"].items(), ("**Mean**", t["mean"]), ("**All**", t["all"]),
                *((f"Activity: {a}", r) for a, r in t["activities"].items())]
        for name, r in rows:
            lines.append(f"| {name} | {_fmt(r['PCK'][-1])} | {_fmt(r['AUC'][-1])} | {_fmt(r['MPJPE'][-1])} "
                         f"| {r['frames']} |")
        lines.append("")
    return lines


def markdown(result: EvalResult) -> str:
    s = result.settings
    lines = [f"# {s['dataset']} evaluation — mode: **{result.mode}**", "",
             f"- H={s['num_hypotheses']} hypotheses, K={s['num_steps']} DDIM steps, eta={s['eta']}, "
             f"flip={s['flip']}, seed={s['seed']}, batch size={s['batch_size']} windows of T={s['window']}",
             f"- P-Best: {s['p_best']}; JPMA root: {s['jpma_root']} ({s['jpma_space']})",
             f"- frames counted: {s['frame_counting']}; {s['num_windows']} of {s['total_windows']} windows, "
             f"{s['num_frames']:.0f} frames",
             f"- windows evaluated: {s['window_selection']}"]
    for key in ("checkpoint", "checkpoint_sha256", "keypoints"):
        if key in s:
            lines.append(f"- {key}: `{s[key]}`")
    lines += [f"- note: {n}" for n in result.notes] + [""]
    subjects = [None] + (result.subjects if s.get("by_subject") else [])
    for subject in subjects:
        for _, prefix, title in PROTOCOLS:
            rows = _metric_table(result, prefix, subject)
            if rows:
                lines += [f"## {title}" + (f" — subject {subject}" if subject else ""), ""] + rows + [""]
    if result.pck:
        lines += _pck_tables(result.pck, s["num_steps"])
    return "\n".join(lines) + "\n"


# --- CSV / JSON ----------------------------------------------------------------------------------

def csv_text(result: EvalResult) -> str:
    """Long format: mode, subject ('all' = pooled), protocol, metric, step, group ('Avg' = group mean), mm."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["mode", "subject", "protocol", "metric", "step", "group", "value_mm", "frames"])
    for subject in [None] + (result.subjects if result.settings.get("by_subject") else []):
        table, summary, frames = result.table(subject), result.summary(subject), result.frames(subject)
        for m in result.metrics:
            protocol, name = (2, m.removeprefix(P2_PREFIX)) if m.startswith(P2_PREFIX) else (1, m)
            for k in range(result.settings["num_steps"]):
                for g, values in table[m].items():
                    w.writerow([result.mode, subject or "all", protocol, name, k + 1, g, f"{values[k]:.4f}",
                                f"{frames[g]:.0f}"])
                w.writerow([result.mode, subject or "all", protocol, name, k + 1, "Avg", f"{summary[m][k]:.4f}", ""])
    return buf.getvalue()


def pck_csv_text(result: EvalResult) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["mode", "metric", "step", "scope", "name", "PCK", "AUC", "MPJPE", "frames"])
    for metric, t in (result.pck or {}).items():
        rows = [("sequence", n, r) for n, r in t["sequences"].items()] + [("mean", "Mean", t["mean"]),
                ("all", "All", t["all"])] + [("activity", n, r) for n, r in t["activities"].items()]
        for k in range(result.settings["num_steps"]):
            for scope, name, r in rows:
                w.writerow([result.mode, metric, k + 1, scope, name, f"{r['PCK'][k]:.4f}", f"{r['AUC'][k]:.4f}",
                            f"{r['MPJPE'][k]:.4f}", r["frames"]])
    return buf.getvalue()


def json_text(result: EvalResult, sweep: Sequence[EvalResult] = ()) -> str:
    out = result.to_dict()
    if sweep:
        out["hypotheses_sweep"] = {str(r.settings["num_hypotheses"]): r.summary() for r in sweep}
    return json.dumps(out, indent=2, allow_nan=True) + "\n"


# --- plots ---------------------------------------------------------------------------------------

def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    return buf.getvalue()


def _figure(width: float = 6.4, height: float = 4.0):
    # matplotlib is heavy and only the plots need it, so it loads on first use; Figure, not pyplot:
    # no global backend state, safe in threads.
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height))
    return fig, fig.add_subplot()


def plot_steps(result: EvalResult) -> bytes:
    """Error vs DDIM step k, one line per aggregation (dashed: Protocol #2)."""
    fig, ax = _figure()
    summary, K = result.summary(), result.settings["num_steps"]
    for m in result.metrics:
        ax.plot(range(1, K + 1), summary[m], marker="o", linestyle="--" if m.startswith(P2_PREFIX) else "-", label=m)
    ax.set(xlabel="DDIM step k", ylabel="error (mm)", xticks=range(1, K + 1),
           title=f"{result.settings['dataset']} [{result.mode}] H={result.settings['num_hypotheses']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _png(fig)


def plot_actions(result: EvalResult) -> bytes:
    """Per-action Protocol #1 errors at the last step k = K, one bar per aggregation."""
    table = result.table()
    names = [m for m in METRIC_NAMES if m in table]
    groups = list(table[names[0]]) if names else []
    fig, ax = _figure(max(6.4, 0.6 * len(groups) + 2), 4.0)
    width = 0.8 / max(len(names), 1)
    for i, m in enumerate(names):
        ax.bar([g + i * width for g in range(len(groups))], [table[m][g][-1] for g in groups], width, label=m)
    ax.set_xticks([g + 0.4 - width / 2 for g in range(len(groups))])
    ax.set_xticklabels([SHORT_NAMES.get(g, g) for g in groups], rotation=45, ha="right")
    ax.set(ylabel="MPJPE (mm)", title=f"{result.settings['dataset']} [{result.mode}] per group, "
                                      f"k={result.settings['num_steps']}")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _png(fig)


def plot_sweep(results: Sequence[EvalResult]) -> bytes:
    """Error at the last step vs number of hypotheses H (one result per H)."""
    results = sorted(results, key=lambda r: r.settings["num_hypotheses"])
    Hs = [r.settings["num_hypotheses"] for r in results]
    fig, ax = _figure()
    for m in results[0].metrics:
        if not m.startswith(P2_PREFIX):
            ax.plot(Hs, [r.summary()[m][-1] for r in results], marker="o", label=m)
    s = results[0].settings
    ax.set(xlabel="hypotheses H", ylabel="MPJPE (mm)", xscale="log", xticks=Hs,
           title=f"{s['dataset']} [{results[0].mode}] error vs H, k={s['num_steps']}")
    ax.minorticks_off()  # log-axis minor labels (3x10^0) would clutter the H ticks
    ax.set_xticklabels([str(h) for h in Hs])
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _png(fig)


def write_report(result: EvalResult, out_dir: str | Path, sweep: Sequence[EvalResult] = ()) -> list[Path]:
    """Write <dataset>_<mode>.{md,csv,json}, _steps.png, _actions.png (+ _pck.csv, _sweep_h.png)."""
    stem = Path(out_dir) / f"{result.settings['dataset']}_{result.mode}"
    files = [write_bytes(f"{stem}.md", markdown(result)), write_bytes(f"{stem}.csv", csv_text(result)),
             write_bytes(f"{stem}.json", json_text(result, sweep)),
             write_bytes(f"{stem}_steps.png", plot_steps(result)),
             write_bytes(f"{stem}_actions.png", plot_actions(result))]
    if result.pck:
        files.append(write_bytes(f"{stem}_pck.csv", pck_csv_text(result)))
    if sweep:
        files.append(write_bytes(f"{stem}_sweep_h.png", plot_sweep(sweep)))
    return files
