"""Loading benchmarks (synthetic-tofu, TOFU, MUSE) into `Benchmark`s and tokenising them."""
