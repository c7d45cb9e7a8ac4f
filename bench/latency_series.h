// LatencySeries: one named operation of a latency benchmark and the
// latencies measured for it, with the mean and percentiles those benchmarks
// report (etcd_bench, transport_bench). Plain data; not thread-safe.
#ifndef STRONGBOX_BENCH_LATENCY_SERIES_H_
#define STRONGBOX_BENCH_LATENCY_SERIES_H_

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

namespace strongbox::bench {

struct LatencySeries {
  std::string name;
  // Runs operation number `i`; false if it failed.
  std::function<bool(int)> op;
  // One latency per run, in microseconds.
  std::vector<double> micros;
};

// The `p` quantile (0 <= p <= 1) of `v`, nearest rank. REQUIRES: !v.empty().
inline double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}

// The mean of `v`. REQUIRES: !v.empty().
inline double Mean(const std::vector<double>& v) {
  double sum = 0;
  for (double x : v) sum += x;
  return sum / v.size();
}

}  // namespace strongbox::bench

#endif  // STRONGBOX_BENCH_LATENCY_SERIES_H_
