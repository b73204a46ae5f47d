"""The user's own models: find the hot submodules, write them as KernelBench problems
(`extract`), and swap the optimised kernels back in (`apply`)."""
