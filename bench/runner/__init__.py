"""Running a plan: the selection -> cells (plan), the rounds policy and the local scheduler
(schedule: rounds, duet, A B / B A, resume), the Ray executor, sides and worktrees for in-job
A/B checks, what cannot run here (limits) and how long a run will take (estimate)."""
