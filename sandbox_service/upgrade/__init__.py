"""`sandbox-service upgrade`: merge each sandbox's private /etc three ways, re-render its units, reload.

This package is the public face of the upgrade: it only re-exports. The three-way merge of /etc (base copy,
host, sandbox) and its safe no-follow file handling live in .threeway; the command that plans every
sandbox, applies them with one daemon-reload and restarts the running ones lives in .command.
"""

from .command import RUNNING_STATES, SandboxUpgrade, UpgradeResult, etc_copies, restart_running, upgrade
from .threeway import (
    HOSTNEW_SUFFIX,
    SANDBOX_CHANGES,
    Action,
    MergePlan,
    MergeReport,
    Node,
    NodeKind,
    apply_merge,
    merge,
    plan_merge,
)

__all__ = [
    "HOSTNEW_SUFFIX",
    "RUNNING_STATES",
    "SANDBOX_CHANGES",
    "Action",
    "MergePlan",
    "MergeReport",
    "Node",
    "NodeKind",
    "SandboxUpgrade",
    "UpgradeResult",
    "apply_merge",
    "etc_copies",
    "merge",
    "plan_merge",
    "restart_running",
    "upgrade",
]
