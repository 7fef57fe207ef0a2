"""Evaluation of D3DP models: multi-hypothesis errors per DDIM step (docs/method.md §5), 3DHP PCK/AUC (§7.5).

    from d3dp_ktp.evaluation import EvalConfig, evaluate, write_report
    from d3dp_ktp.sampling import SamplingConfig
    result = evaluate(model, dataset, EvalConfig())   # H, K, ... = the model's own (model.sampling)
    result = evaluate(model, dataset, EvalConfig(SamplingConfig(num_hypotheses=20, num_steps=10)))
    result.summary()        # {'J-Best': [mm per step k], ..., 'P2/J-Agg': [...]}
    result.table()          # {'J-Best': {'Directions': [mm per k], ...}, ...}
    write_report(result, "outputs/eval")
"""
from .config import MODES, EvalConfig
from .report import write_report
from .runner import EvalResult, evaluate

__all__ = ["EvalConfig", "EvalResult", "MODES", "evaluate", "write_report"]
