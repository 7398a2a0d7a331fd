"""The benchmarks' shared harness: media clips, client peers, the benchmark
server, child processes and the counting of streams and CPU time."""
