"""Speed and memory benchmarks: I/O, preprocessing, training throughput, prediction, CPU kernels, GPU."""
