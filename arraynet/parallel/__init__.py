"""Scaling out: communicators (MPI, NCCL, single process), data-parallel training and
the sharding of batches over ranks."""
