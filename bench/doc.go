// Package bench holds the project's benchmarks. They are programs, not part of make test:
// each one measures a baseline in the same run and reports ratios, because these machines
// are noisy. Run them with `make bench`.
package bench
