"""OpenMP threads that sleep when they wait, so a run beside another job slows gracefully.

Imported by the recipes before torch starts (libgomp reads its settings when it is loaded). With
OpenMP's default spin-then-sleep policy a 2-thread tiny pretraining run beside a busy 1-thread
job made 0.58x the updates per second of a 1-thread run alone (its threads spin on a core the
other job holds); with ``OMP_WAIT_POLICY=PASSIVE`` it makes 1.02x, at a cost of 8 % when it runs
alone (``benchmarks/results/cpu_sharing.md``). A value set by the user wins.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
