"""Batch optimisation: many KernelBench problems at once, resumable, with a report.

In-process (`LocalSolver`), against a running server (`remote.RemoteSolver`) or on Ray
(`ray_batch`); all share the session logic, the turn budget, the store and the report.
"""

from server.batch.budget import Gate, TurnBudget
from server.batch.problems import ProblemFile, find_problems, is_problem
from server.batch.progress import BatchProgress
from server.batch.record import ProblemRecord, TurnRecord
from server.batch.report import fast_p, render_report, write_report
from server.batch.runner import BatchSettings, LocalSolver, loop_config_for, pending, run_batch
from server.batch.session import is_solved, run_session
from server.batch.store import ResultStore

__all__ = [
    "BatchProgress",
    "BatchSettings",
    "Gate",
    "LocalSolver",
    "ProblemFile",
    "ProblemRecord",
    "ResultStore",
    "TurnBudget",
    "TurnRecord",
    "fast_p",
    "find_problems",
    "is_problem",
    "is_solved",
    "loop_config_for",
    "pending",
    "render_report",
    "run_batch",
    "run_session",
    "write_report",
]
