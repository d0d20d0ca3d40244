"""What every learner shares, whichever stage it belongs to: checkpoints that never lie
(`checkpoint`), numeric precision (`precision`), the CPU heap setting (`heap`) and small network
blocks (`blocks`). The world model, the policy learner and the library baselines import from here,
not from each other."""
