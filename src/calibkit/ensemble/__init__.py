"""Ensembles of LLM labelers (paper 001, section 3): weighted majority vote and the cost-aware
cascading policy (Algorithms 1 and 2), bin-edge search, cost accounting and Table-3 reports.

Optuna (search) and matplotlib (frontier plot) are imported only inside the functions that use
them.
"""

from calibkit.ensemble.binning import (
    bin_indices,
    cut_points_to_edges,
    edges_to_cut_points,
    prefix_codes,
    quantile_cut_points,
    uniform_cut_points,
)
from calibkit.ensemble.costs import (
    CostSummary,
    ModelCost,
    called_from_depth,
    cost_matrix,
    parse_costs,
    summarize_cost,
)
from calibkit.ensemble.inputs import (
    StackedScores,
    answers_confidences,
    check_ensemble_probs,
    stack_scores,
)
from calibkit.ensemble.policy import CascadePolicy, CascadeResult, PolicyTables
from calibkit.ensemble.prf import PRF, f1_score, precision_recall_f1
from calibkit.ensemble.report import (
    PolicyRow,
    Table3Result,
    baseline_rows,
    format_table,
    frontier_plot,
    table3,
)
from calibkit.ensemble.search import CascadeCV, CVScore, SearchResult, search_edges
from calibkit.ensemble.strategies import (
    DEFAULT_STRATEGIES,
    Strategy,
    available_strategies,
    build_library,
    get_strategy,
    register_strategy,
)
from calibkit.ensemble.vote import majority_vote, most_confident, weighted_majority_vote

__all__ = [
    "DEFAULT_STRATEGIES",
    "PRF",
    "CVScore",
    "CascadeCV",
    "CascadePolicy",
    "CascadeResult",
    "CostSummary",
    "ModelCost",
    "PolicyRow",
    "PolicyTables",
    "SearchResult",
    "StackedScores",
    "Strategy",
    "Table3Result",
    "answers_confidences",
    "available_strategies",
    "baseline_rows",
    "bin_indices",
    "build_library",
    "called_from_depth",
    "check_ensemble_probs",
    "cost_matrix",
    "cut_points_to_edges",
    "edges_to_cut_points",
    "f1_score",
    "format_table",
    "frontier_plot",
    "get_strategy",
    "majority_vote",
    "most_confident",
    "parse_costs",
    "precision_recall_f1",
    "prefix_codes",
    "quantile_cut_points",
    "register_strategy",
    "search_edges",
    "stack_scores",
    "summarize_cost",
    "table3",
    "uniform_cut_points",
    "weighted_majority_vote",
]
