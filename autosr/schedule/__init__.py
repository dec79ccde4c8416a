"""The runtime scheduler: phases, dynamic loss scheduling and the training automations.

Depends only on the hook contract (autosr.train.hooks), never on the Trainer; torch-free at
import (tensor maths import torch inside the functions that need it). See docs/scheduler.md.
"""

from autosr.schedule.registry import (
    ALL,
    AUTOMATION_NAMES,
    AUTOMATIONS,
    DLS,
    build_automations,
    describe,
)

__all__ = ["ALL", "AUTOMATION_NAMES", "AUTOMATIONS", "DLS", "build_automations", "describe"]
