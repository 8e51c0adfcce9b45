// bench/shim.cc - the only C++ in sluice: Google Benchmark behind the C API
// of shim.h, and a main() that prints a summary of medians and ratios to the
// baselines after Google Benchmark's own report.
#include "shim.h"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

namespace {

benchmark::State &S(sbench_state *st) { return *reinterpret_cast<benchmark::State *>(st); }
benchmark::internal::Benchmark *B(sbench *b)
{
	return reinterpret_cast<benchmark::internal::Benchmark *>(b);
}

// family name -> baseline family name
std::map<std::string, std::string> &baselines()
{
	static std::map<std::string, std::string> m;
	return m;
}

// registered benchmark -> its family name (1.7.1 has no Benchmark::GetName)
std::map<const void *, std::string> &names()
{
	static std::map<const void *, std::string> m;
	return m;
}

struct Result {
	std::string name;   // full instance name without aggregate suffix
	std::string family; // function name
	std::string suffix; // "/args/threads:N" part
	double ns_per_op;   // median real time per iteration, or per item
	bool per_item;
	double items_per_sec;
};

// Collects median aggregates (or single runs when there are no repetitions)
// while the console reporter prints as usual.
class SummaryReporter : public benchmark::ConsoleReporter {
      public:
	std::vector<Result> results;

	void ReportRuns(const std::vector<Run> &runs) override
	{
		ConsoleReporter::ReportRuns(runs);
		for (const Run &r : runs) {
			if (r.error_occurred)
				continue;
			bool aggregate = r.run_type == Run::RT_Aggregate;
			if (aggregate && r.aggregate_name != "median")
				continue;
			if (!aggregate && r.repetitions > 1)
				continue;
			Result res;
			res.family = r.run_name.function_name;
			res.name = r.run_name.str();
			res.suffix = res.name.substr(std::min(res.name.size(), res.family.size()));
			double scale = 1.0;
			switch (r.time_unit) {
			case benchmark::kNanosecond: scale = 1.0; break;
			case benchmark::kMicrosecond: scale = 1e3; break;
			case benchmark::kMillisecond: scale = 1e6; break;
			case benchmark::kSecond: scale = 1e9; break;
			}
			auto it = r.counters.find("items_per_second");
			res.items_per_sec = it != r.counters.end() ? double(it->second) : 0.0;
			res.per_item = res.items_per_sec > 0;
			res.ns_per_op = res.per_item ? 1e9 / res.items_per_sec
						     : r.GetAdjustedRealTime() * scale;
			results.push_back(res);
		}
	}
};

const Result *find_baseline(const std::vector<Result> &all, const Result &r)
{
	auto b = baselines().find(r.family);
	if (b == baselines().end())
		return nullptr;
	const Result *first = nullptr;
	for (const Result &x : all) {
		if (x.family != b->second)
			continue;
		if (x.suffix == r.suffix)
			return &x;
		if (first == nullptr)
			first = &x;
	}
	return first;
}

void print_summary(const std::vector<Result> &all)
{
	if (all.empty())
		return;
	size_t width = 10;
	for (const Result &r : all)
		width = std::max(width, r.name.size());
	std::printf("\nsluice benchmark summary (medians; ns/op is wall time per operation,\n"
		    "per item where the benchmark counts items: for N threads, 1e9 / total items/s)\n\n");
	std::printf("%-*s %12s  %s\n", int(width), "benchmark", "ns/op", "vs baseline (time ratio)");
	for (const Result &r : all) {
		const Result *base = find_baseline(all, r);
		if (base != nullptr && base->ns_per_op > 0)
			std::printf("%-*s %12.2f  %.2fx %s\n", int(width), r.name.c_str(), r.ns_per_op,
				    r.ns_per_op / base->ns_per_op, base->name.c_str());
		else
			std::printf("%-*s %12.2f\n", int(width), r.name.c_str(), r.ns_per_op);
	}
	std::printf("\n(ratio < 1: faster than the baseline)\n");
}

} // namespace

extern "C" {

sbench *sbench_register(const char *name, sbench_fn fn)
{
	auto *b = benchmark::RegisterBenchmark(name, [fn](benchmark::State &st) {
		fn(reinterpret_cast<sbench_state *>(&st));
	});
	names()[b] = name;
	return reinterpret_cast<sbench *>(b);
}

void sbench_arg(sbench *b, int64_t arg) { B(b)->Arg(arg); }
void sbench_args2(sbench *b, int64_t a0, int64_t a1) { B(b)->Args({a0, a1}); }
void sbench_threads(sbench *b, int threads) { B(b)->Threads(threads); }
void sbench_thread_range(sbench *b, int lo, int hi)
{
	for (int t = lo; t < hi; t *= 2)
		B(b)->Threads(t);
	B(b)->Threads(hi);
}
void sbench_real_time(sbench *b) { B(b)->UseRealTime(); }

int sbench_max_threads(int fallback)
{
	const char *e = std::getenv("SLUICE_BENCH_MAX_THREADS");
	int n = e != nullptr ? std::atoi(e) : fallback;
	return n >= 1 ? n : 1;
}
void sbench_fixed_iterations(sbench *b, int64_t n) { B(b)->Iterations(n); }

void sbench_baseline(sbench *b, const char *baseline_family)
{
	baselines()[names()[B(b)]] = baseline_family;
}

uint64_t sbench_batch(sbench_state *st)
{
	benchmark::State &s = S(st);
	// One batch holding the whole run: the C loop runs uninterrupted.
	if (s.KeepRunningBatch(s.max_iterations))
		return uint64_t(s.max_iterations);
	return 0;
}

int64_t sbench_range(sbench_state *st, int index) { return S(st).range(size_t(index)); }
int sbench_thread_index(sbench_state *st) { return int(S(st).thread_index()); }
int sbench_thread_count(sbench_state *st) { return int(S(st).threads()); }
uint64_t sbench_iterations(sbench_state *st) { return uint64_t(S(st).iterations()); }
void sbench_pause(sbench_state *st) { S(st).PauseTiming(); }
void sbench_resume(sbench_state *st) { S(st).ResumeTiming(); }
void sbench_items(sbench_state *st, int64_t items) { S(st).SetItemsProcessed(items); }
void sbench_label(sbench_state *st, const char *label) { S(st).SetLabel(label); }
void sbench_error(sbench_state *st, const char *message) { S(st).SkipWithError(message); }

void sbench_counter(sbench_state *st, const char *name, double value, int flags)
{
	benchmark::Counter::Flags f = benchmark::Counter::kDefaults;
	if (flags == 1)
		f = benchmark::Counter::kAvgThreads;
	else if (flags == 2)
		f = benchmark::Counter::kIsRate;
	S(st).counters[name] = benchmark::Counter(value, f);
}

} // extern "C"

int main(int argc, char **argv)
{
	benchmark::Initialize(&argc, argv);
	if (benchmark::ReportUnrecognizedArguments(argc, argv))
		return 1;
	SummaryReporter reporter;
	benchmark::RunSpecifiedBenchmarks(&reporter);
	print_summary(reporter.results);
	benchmark::Shutdown();
	return 0;
}
